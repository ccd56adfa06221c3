"""Schedules (driver.md §E): run scripts and TOML, named schedules, resumable replay."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alexnet_replay import networks
from alexnet_replay.cli import main
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import checkpoint as ckpt
from alexnet_replay.harness import schedules as sch

PARAMS = networks.bundled("cifar-18pct").params


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("digits")
    digits_batches(folder, seed=0, dp_type="cifar")
    return folder


def three_stages(data: Path) -> str:
    """Three convnet.py commands as the 2012 author wrote them: a fresh start, then two
    resumptions that change the stop epoch, the rates and the test frequency."""
    return "\n".join([
        "#!/bin/sh",
        f"python convnet.py --data-path={data} --save-path=/ignored --train-range=1-3 --test-range=6 \\",
        f"    --layer-def=cifar-18pct --layer-params={PARAMS} --test-freq=3 --mini=64 --epochs=1 --seed=4 >> log 2>&1",
        "# alexnet-replay: rates conv*.epsW=0.004 fc10.epsB=0.001",
        "python convnet.py -f /storage/ConvNet__2012 --epochs=3 --test-freq=1 | tee -a log",
        "python2 convnet.py -f /storage/ConvNet__2012 --epochs=4 --gpu=0",
    ]) + "\n"


def test_script_parsing_options_prefixes_and_refusals(tmp_path):
    s = sch.parse_script(three_stages(tmp_path), "run.sh")
    assert len(s.stages) == 3
    first, second, third = s.stages
    assert first.resume is None and first.options["epochs"] == "1" and first.options["mini"] == "64"
    assert first.where == "run.sh: line 2"                      # the continued line counts from its start
    assert second.resume == "/storage/ConvNet__2012" and second.options == {"epochs": "3", "test_freq": "1"}
    assert second.rates == {"conv*": {"epsW": 0.004}, "fc10": {"epsB": 0.001}}
    assert third.options == {"epochs": "4"}                    # --gpu is hardware selection: noted, dropped
    assert any("--gpu=0 ignored" in n for n in s.notes) and any("redirection ignored" in n for n in s.notes)
    # getopt: a unique prefix is the option, "--name value" works too (§C.1)
    s = sch.parse_script("python convnet.py -f x --epo 9 --layer-p=p.cfg\n", "a.sh")
    assert s.stages[0].options == {"epochs": "9", "layer_params": "p.cfg"}
    for text, message in [
        ("cd /storage && python convnet.py -f x\n", "only convnet.py commands can be replayed \\('cd'"),
        ("python convnet.py --test\n", "ambiguous"),
        ("python convnet.py --bogus=1\n", "unknown option --bogus"),
        ("python convnet.py --multiview-test=1 --conv-to-local=conv1\n", "--conv-to-local=conv1 cannot be replayed"),
        ("python convnet.py --check-grads=1\n", "--check-grads=1 cannot be replayed: a gradient check"),
        ("python convnet.py --epochs=many\n", "--epochs: 'many' is not a valid int"),
        ("python convnet.py -f x &\n", "shell operator '&'"),
        ("echo hello\n", "line 1: only convnet.py"),
    ]:
        with pytest.raises(ReplayError, match=message):
            sch.parse_script(text, "bad.sh")


def test_named_schedules_show_and_export_round_trip(tmp_path, capsys):
    names = sch.named_schedules()
    assert {"run4", "145", "120-2012"} <= set(names)
    run4 = sch.load_named("run4")
    # driver.md §E.2: six resumptions, stop epochs 22/49/66/73/81/95, noise off at step 4
    assert [s.options["epochs"] for s in run4.stages] == ["22", "49", "66", "73", "81", "95"]
    assert [s.options.get("layer_params") for s in run4.stages[1:]] == \
        [f"layer-params-120-4gpu-auto{k}.cfg" for k in range(2, 7)]
    assert run4.stages[3].options["color_noise"] == "0"
    s145 = sch.load_named("145")                               # §E.3, row 145: 25/51/67/72/79, stop 91
    assert [s.options["epochs"] for s in s145.stages] == ["25", "51", "67", "72", "79", "91"]
    assert s145.stages[4].rates["conv1*"] == {"epsW": 0.0, "epsB": 0.0}
    for name in names:  # TOML -> script -> TOML says the same (the digest covers options, -f, rates)
        s = sch.load_named(name)
        back = sch.parse_script(sch.to_script(s), "x.sh")
        assert back.digest() == s.digest() and back.name == s.name, name
        assert sch.parse_toml(sch.to_toml(back), "x.toml").digest() == s.digest(), name
    assert main(["schedule", "show", "run4"]) == 0
    assert "stage 6: -f ConvNet__2012-08-03_14.28.23 --layer-params=layer-params-120-4gpu-auto6.cfg" \
        in capsys.readouterr().out
    assert main(["schedule", "export", "145", "--to", str(tmp_path / "145.sh")]) == 0
    assert main(["schedule", "export", str(tmp_path / "145.sh"), "--to", str(tmp_path / "145.toml")]) == 0
    assert sch.load_schedule(str(tmp_path / "145.toml")).digest() == s145.digest()
    assert main(["schedule", "export", "145", "--to", str(tmp_path / "145.sh")]) == 1   # exists: refused
    assert "exists (give --force" in capsys.readouterr().err
    # a named ImageNet schedule needs the user's data; nothing is written when it is missing
    assert main(["schedule", "run", "145", "--out", str(tmp_path / "run"), "--cfg-dir", str(tmp_path)]) == 1
    assert "layers-145.cfg: not found" in capsys.readouterr().err


def test_rate_edits_keep_list_lengths():
    text = "[conv1]\nepsW=0.01,0.02\nepsB=0.02\nmomW=0.9,0.9\n\n[fc10]\nepsW=0.01\nepsB=0.02\n"
    out = sch.edit_rates(text, {"*": {"epsW": 0.001}, "conv*": {"epsW": 0.0, "epsB": 0.0}})
    assert out == "[conv1]\nepsW=0,0\nepsB=0\nmomW=0.9,0.9\n\n[fc10]\nepsW=0.001\nepsB=0.02\n"


def _weights(folder: Path) -> dict[str, np.ndarray]:
    newest = sorted(folder.glob("*.npz"))[-1]
    _, arrays = ckpt.read_checkpoint(newest)
    return arrays


def test_killed_schedule_resumes_bit_identical(digits, tmp_path):
    """A three-stage schedule killed (SIGKILL) in the middle of stage 2, re-run with the same
    command, ends with every weight and increment equal, bit for bit, to an uninterrupted run."""
    script = tmp_path / "three.sh"
    script.write_text(three_stages(digits))
    whole = sch.run_schedule(sch.load_schedule(str(script)), tmp_path / "whole", quiet=True, stdout=io.StringIO())

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cmd = [sys.executable, "-m", "alexnet_replay", "schedule", "run", str(script), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "schedule.json").exists():
                state = json.loads((out / "schedule.json").read_text())
                # stage 1 ends at 1.3 (its last test) and trains 2.1; stage 2 saves after every batch
                # and then removes the older checkpoint (wait for that: a kill between the two keeps both)
                saved = {p.name for p in out.glob("ConvNet__*/*.npz")}
                if state["stages_done"] == 1 and saved and "1.3.npz" not in saved:
                    break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert state is not None and state["stages_done"] == 1, "the run was not caught inside stage 2"
    saved = [p.name for p in out.glob("ConvNet__*/*.npz")]
    assert saved and "1.3.npz" not in saved

    folder = sch.run_schedule(sch.load_schedule(str(script)), out, quiet=True, stdout=io.StringIO())
    a, b = _weights(whole), _weights(folder)
    assert sorted(p.name for p in whole.glob("*.npz")) == sorted(p.name for p in folder.glob("*.npz")) == ["5.1.npz"]
    assert a.keys() == b.keys() and len(a) == 16                # 4 weight layers x (W, W inc, b, b inc)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    log = (out / "log.txt").read_text()
    assert log.count("== stage 2/3") == 2   # stage 2 ran again, from its checkpoint


def test_schedule_folder_of_another_schedule_is_refused(digits, tmp_path):
    script = tmp_path / "one.sh"
    script.write_text(f"python convnet.py --data-path={digits} --train-range=1 --test-range=6 --layer-def=cifar-18pct "
                      f"--layer-params={PARAMS} --test-freq=1 --epochs=1 --mini=64\n")
    sch.run_schedule(sch.load_schedule(str(script)), tmp_path / "out", quiet=True, stdout=io.StringIO())
    script.write_text(script.read_text().replace("--epochs=1", "--epochs=2"))
    with pytest.raises(ReplayError, match="holds a run of another schedule"):
        sch.run_schedule(sch.load_schedule(str(script)), tmp_path / "out", quiet=True, stdout=io.StringIO())
    with pytest.raises(ReplayError, match="the first stage resumes 'x' \\(-f\\): give --from CKPT"):
        sch.run_schedule(sch.parse_script("python convnet.py -f x --epochs=3\n", "r.sh"), tmp_path / "o2",
                         stdout=io.StringIO())


def _chain(digits: Path, fine_tune_layers: Path) -> str:
    """Pre-train the bundled net on digit batches 1-2, then fine-tune a second network whose conv1
    and conv2 are copied from it (initWFunc/initBFunc) on batches 3-4, with the copied layers frozen."""
    common = f'data-path = "{digits}"\ntest-range = "6"\nmini = 128\ntest-freq = 2\nseed = 5\n'
    frozen = '[stage.rates]\n"conv*" = { epsW = 0.0, epsB = 0.0 }\n'
    return (f'[schedule]\nname = "chain"\n\n'
            f'[[stage]]\nlayer-def = "cifar-18pct"\nlayer-params = "{PARAMS}"\ntrain-range = "1-2"\n{common}'
            'epochs = 1\n\n'
            f'[[stage]]\nepochs = 2\n\n'
            f'[[stage]]\nnote = "fine-tune"\ninit-from = "previous"\nlayer-def = "{fine_tune_layers}"\n'
            f'layer-params = "{PARAMS}"\ntrain-range = "3-4"\n{common}epochs = 1\n{frozen}\n'
            f'[[stage]]\nepochs = 2\n{frozen}')


def test_pretrain_then_fine_tune_chain_runs_and_resumes(digits, tmp_path):
    """driver.md §A.5 as a schedule: a stage with init-from = "previous" starts a new run from the
    stage before's last checkpoint. The copied layers, frozen, end equal to the pre-trained ones;
    a kill inside the fine-tuning run resumes it, bit for bit."""
    layers = tmp_path / "fine-tune.cfg"
    text = networks.bundled("cifar-18pct").layers.read_text()
    for name in ("conv1", "conv2"):
        text = text.replace(f"[{name}]\n", f"[{name}]\ninitWFunc=initw.makew({name})\n"
                                          f"initBFunc=initw.makeb({name})\n", 1)
    layers.write_text(text)
    (tmp_path / "chain.toml").write_text(_chain(digits, layers))
    schedule = sch.load_schedule(str(tmp_path / "chain.toml"))
    shown = sch.describe(schedule)
    assert "stage 3: (new run, initialised from the stage before's last checkpoint) --layer-def=" in shown
    assert sch.parse_script(sch.to_script(schedule), "x.sh").digest() == schedule.digest()  # no -f on stage 3

    log = io.StringIO()
    final = sch.run_schedule(schedule, tmp_path / "whole", stdout=log)
    pretrained = next((tmp_path / "whole").glob("ConvNet__*"))
    assert final.parent == tmp_path / "whole" / "stage-3" and final != pretrained
    assert sorted(p.name for p in pretrained.glob("*.npz")) == ["2.2.npz"]     # its last test (§C.4)
    source = pretrained / "2.2.npz"
    assert f"--init-from={source}" in log.getvalue()
    assert f"Initialised conv1: weights from layer 'conv1' of {source} (initWFunc)" in log.getvalue()
    a, b = _weights(pretrained), _weights(final)
    for name in ("conv1/weights/0", "conv1/biases", "conv2/weights/0", "conv2/biases"):
        assert np.array_equal(a[name], b[name]), name                        # copied, then frozen
    assert not np.array_equal(a["fc10/weights/0"], b["fc10/weights/0"])     # fc10 is the fine-tuned run's own

    # killed after the fine-tuning run's first checkpoint: the same command resumes that run
    class Killed(Exception):
        pass

    def kill(path: Path) -> None:
        if path.parent.parent.name == "stage-3":
            raise Killed(path)

    with pytest.raises(Killed):
        sch.run_schedule(schedule, tmp_path / "killed", quiet=True, stdout=io.StringIO(), on_save=kill)
    resumed = sch.run_schedule(schedule, tmp_path / "killed", quiet=True, stdout=io.StringIO())
    c = _weights(resumed)
    assert a.keys() == c.keys() == b.keys()
    for name in b:
        assert np.array_equal(b[name], c[name]), name

    with pytest.raises(ReplayError, match="stage 1: the first stage starts a run initialised from an earlier one"):
        sch.run_schedule(sch.parse_toml('[schedule]\n[[stage]]\ninit-from = "previous"\nepochs = 1\n', "c.toml"),
                         tmp_path / "o3", stdout=io.StringIO())
    with pytest.raises(ReplayError, match="-f and --init-from exclude each other"):
        sch.parse_script("python convnet.py -f x --init-from=previous\n", "c.sh")
    with pytest.raises(ReplayError, match="--stage-option 9:epochs=3: schedule 'chain' has stages 1..4"):
        sch.stage_options(["9:epochs=3"], schedule)
    assert sch.stage_options(["3:data-path=/d", "1:epochs=4"], schedule) == {3: {"data_path": "/d"}, 1: {"epochs": "4"}}


def test_named_chain_schedule_146_2012_2009():
    s = sch.load_named("146-2012-2009")
    assert [st.init_from for st in s.stages] == ["previous", None, "previous", None, None, None, None, None]
    assert [st.options["epochs"] for st in s.stages] == ["2", "6", "3", "4", "22", "38", "42", "52"]
    assert s.stages[0].options["layer_def"] == "layers-146-2009.cfg"
    assert s.stages[2].options["layer_def"] == "layers-146-2012-2009.cfg"
    assert s.stages[4].rates["conv1*"] == {"epsW": 0.0}
    assert "stage 1: (new run, initialised from --from CKPT)" in sch.describe(s)
