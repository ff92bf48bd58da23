# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first (a plain `pip install torch` pulls the CUDA build).
TORCH_SPEC ?= torch==2.13.0
DEMO_SCENE ?= data/synthetic_demo
DEMO_RUN ?= log/demo

.PHONY: install demo test lint bench clean-demo

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

$(DEMO_SCENE)/meta.json: | install
	$(PY) tools/make_synthetic_scene.py $(DEMO_SCENE) --overwrite 1

demo: install $(DEMO_SCENE)/meta.json
	$(PY) train.py --config configs/demo.txt --overwrite 1
	$(PY) render_one_video.py --ckpt $(DEMO_RUN)/ckpt.pt --cam_num 0
	@$(PY) tools/show_metrics.py $(DEMO_RUN)

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

bench: install $(DEMO_SCENE)/meta.json
	$(PY) bench/train_speed.py --datadir $(DEMO_SCENE)

clean-demo:
	rm -rf $(DEMO_SCENE) $(DEMO_RUN)
