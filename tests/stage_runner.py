"""Run stage scripts as real child processes without paying the interpreter + torch start-up per run.

A zygote process imports the toolkit once; every run is a ``fork`` of it that executes the script as
``__main__`` (``runpy``) with its own argv, cwd, stdout and stderr files, and ends with the script's
own exit status (an uncaught exception prints its traceback and exits 1, as ``python script.py``
would). Runs are separate processes: their exit codes, signals, file locks and pids are real.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ZYGOTE = r"""
import json, os, runpy, signal, sys, tempfile, traceback
sys.path.insert(0, os.getcwd())
import numpy, torch, cv2, imageio_ffmpeg, configargparse, pycolmap  # noqa: F401 - warm the imports
import engine.options, engine.train.trainer, engine.workflow  # noqa: F401
import engine.train.fragments, engine.render.static_depth  # noqa: F401
import dataLoader.colmap, dataLoader.video_io, synthetic.scene  # noqa: F401
reply = sys.stdout


def child(req, out, err):
    code = 1
    try:
        fd_in = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd_in, 0)
        os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.stdin = open(os.devnull)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(req["cwd"])
        os.environ.update(req.get("env", {}))
        torch.set_num_threads(1)
        sys.argv = [req["script"], *req["args"]]
        runpy.run_path(req["script"], run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            sys.stderr.write(f"{exc.code}\n")
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


files = {}
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "spawn":
        fd, out = tempfile.mkstemp(prefix="stage-out-")
        os.close(fd)
        fd, err = tempfile.mkstemp(prefix="stage-err-")
        os.close(fd)
        pid = os.fork()
        if pid == 0:
            child(req, out, err)
        files[pid] = (out, err)
        reply.write(json.dumps({"pid": pid}) + "\n")
    else:
        _, status = os.waitpid(req["pid"], 0)
        out, err = files.pop(req["pid"])
        texts = []
        for path in (out, err):
            with open(path, errors="replace") as fh:
                texts.append(fh.read())
            os.unlink(path)
        reply.write(json.dumps({"rc": os.waitstatus_to_exitcode(status), "stdout": texts[0],
                                "stderr": texts[1]}) + "\n")
    reply.flush()
"""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


class StageRunner:
    """``run(script, args)`` -> Result; ``spawn`` + ``wait`` for runs that overlap. One zygote per instance."""

    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _ask(self, req: dict) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the stage-runner zygote died")
        return json.loads(line)

    def spawn(self, script: str, args, cwd: Path = ROOT, env: dict | None = None) -> int:
        return self._ask({"op": "spawn", "script": str(ROOT / script), "args": [str(a) for a in args],
                          "cwd": str(cwd), "env": env or {}})["pid"]

    def wait(self, pid: int) -> Result:
        return Result(**self._ask({"op": "wait", "pid": pid}))

    def run(self, script: str, args, cwd: Path = ROOT, env: dict | None = None) -> Result:
        return self.wait(self.spawn(script, args, cwd, env))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
