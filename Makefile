# Two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch is installed first (a plain `pip install torch` pulls the CUDA build).
TORCH_SPEC ?= torch==2.13.0
DEMO_SCENE ?= data/synthetic_demo
DEMO_RUN ?= log/demo
DEPTH_SCENE ?= data/synthetic_depth_demo

.PHONY: install metrics demo demo-depth test lint bench gpu-check clean-demo

# The toolkit itself is installed editable (console entry points mvd-*, importable from tools/ and bench/).
install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# FLIP and JOD (the "metrics" extra), with the installed torch pinned so that nothing swaps it.
metrics: $(VENV)/.metrics

$(VENV)/.metrics: requirements-metrics.txt | install
	$(PY) -m pip install -q -r requirements-metrics.txt \
		"torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')"
	@touch $@

$(DEMO_SCENE)/meta.json: | install
	$(PY) -m tools.make_synthetic_scene $(DEMO_SCENE) --overwrite 1

demo: install metrics $(DEMO_SCENE)/meta.json
	$(PY) train.py --config configs/demo.txt --overwrite 1
	$(PY) render_one_video.py --ckpt $(DEMO_RUN)/ckpt.pt --cam_num 0
	@$(PY) -m tools.show_metrics $(DEMO_RUN)
	@$(MAKE) --no-print-directory demo-depth

# Static-model depth distillation on a 3-training-camera rig: static capture -> prepare_static ->
# static model -> static_model2depth -> dynamic training without and with the depth loss.
$(DEPTH_SCENE)/meta.json: | install
	$(PY) -m tools.make_synthetic_scene $(DEPTH_SCENE) --n_cams 4 --n_frames 6 --width 64 --height 48 \
		--n_static_views 16 --no_video --overwrite 1

demo-depth: install $(DEPTH_SCENE)/meta.json
	$(PY) prepare_static.py --datadir $(DEPTH_SCENE)/static
	$(PY) train.py --config configs/demo_static.txt --overwrite 1
	$(PY) static_model2depth.py --config configs/depth/demo_dynamic.txt --ckpt log/demo_static/ckpt.pt --overwrite 1
	$(PY) train.py --config configs/depth/demo_dynamic.txt --expname demo_depth_off --overwrite 1
	$(PY) train.py --config configs/depth/demo_dynamic.txt --depth_config configs/depth/static_model.txt \
		--expname demo_depth_on --overwrite 1
	@echo "without depth supervision:"; $(PY) -m tools.show_metrics log/demo_depth_off
	@echo "with static-model depth:"; $(PY) -m tools.show_metrics log/demo_depth_on

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .

bench: install $(DEMO_SCENE)/meta.json
	$(PY) -m bench.train_speed --datadir $(DEMO_SCENE)

# On a CUDA machine (README "GPU"): the one-command check, then the GPU-only tests.
gpu-check: install
	$(PY) bench/gpu_check.py
	$(PY) -m pytest -m gpu

clean-demo:
	rm -rf $(DEMO_SCENE) $(DEMO_RUN) $(DEPTH_SCENE) log/demo_static log/demo_depth_off log/demo_depth_on
