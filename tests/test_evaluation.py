"""The paper's evaluation and figures (driver.md §F, §C.5, §C.7): predictions, their errors with
ties, multiview averaging, ensembles and their weight search, nearest neighbours, the cost
history across kill/resume and `checkpoint convert`, the release's prediction pickles, and the
`show` views. Hand-built cases; one small fc network on the digits data set."""

from __future__ import annotations

import argparse
import io
import json
import pickle
import pickletools
import warnings

import numpy as np
import pytest

from alexnet_replay.cli import main
from alexnet_replay.engine import EngineNet
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import checkpoint as ckpt
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.ensemble import average, search_weights
from alexnet_replay.harness.features import layer_outputs, nearest
from alexnet_replay.harness.history import History
from alexnet_replay.harness.options import add_train_arguments
from alexnet_replay.harness.pickles import load_pickle
from alexnet_replay.harness.predict import (Predictions, build_net, error_report, load_trained, predict, ranked,
                                            read_predictions, submission_lines, write_predictions)
from alexnet_replay.harness.providers import make_provider
from alexnet_replay.harness.release_checkpoint import read_release_checkpoint
from alexnet_replay.original.shownet import load as load_config

DEF = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[fc1]
type=fc
inputs=data
outputs=13
initW=0.001
neuron=relu
gpu=0
[fc10]
type=fc
inputs=fc1
outputs=10
initW=0.1
[probs]
type=softmax
inputs=fc10
[logprob]
type=cost.logreg
inputs=labels,probs
gpu=0
"""
PARAMS = "".join(f"[{n}]\nepsW={e}\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n"
                 for n, e in (("fc1", "0.00001"), ("fc10", "0.001"))) \
    + "[logprob]\ncoeff=1\ntopk=5\n"
RUN = ("--train-range=1-5", "--test-range=6", "--test-freq=2", "--mini=97", "--seed=3",
       "--data-provider=cifar-cropped", "--crop-border=2")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (a test extra) renders the digits")
    from alexnet_replay.harness.make_batches import digits_batches

    folder = tmp_path_factory.mktemp("eval")
    digits_batches(folder / "data", seed=0)
    (folder / "net.cfg").write_text(DEF)
    (folder / "params.cfg").write_text(PARAMS)
    slower = PARAMS.replace("epsW=0.001\n", "epsW=0.0001\n").replace("epsW=0.00001", "epsW=0.000001")
    (folder / "params2.cfg").write_text(slower)   # every rate x 0.1: a schedule's step
    return folder


def args_for(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser.parse_args(argv)


def fresh(digits, save, *extra):
    return [f"--data-path={digits / 'data'}", f"--save-path={save}", f"--layer-def={digits / 'net.cfg'}",
            f"--layer-params={digits / 'params.cfg'}", *RUN, *extra]


def preds_of(probs, labels, batches=None) -> Predictions:
    probs = np.asarray(probs, dtype=np.float32)
    return Predictions(probs, labels, batches if batches is not None else np.ones(len(labels)), [])


# -- ranks, errors and submission lines ----------------------------------------------------------------

def test_top_k_with_ties_ranked_lists_and_tie_credit():
    p = preds_of([[0.3, 0.3, 0.3, 0.1, 0.0, 0.0],     # 3-way tie at the top; label 2 is ranked third
                  [0.1, 0.2, 0.2, 0.2, 0.2, 0.1],     # label 5 ties with 0 for rank 5: the lower index wins
                  [0.05, 0.05, 0.1, 0.2, 0.3, 0.3],   # label 4 ties with 5 at the top: ranked first
                  [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]],    # label 0 ties with 4 others below the best
                 [2, 5, 4, 0])
    assert ranked(p.probs, 5).tolist() == [[0, 1, 2, 3, 4], [1, 2, 3, 4, 0], [4, 5, 3, 2, 0], [5, 0, 1, 2, 3]]
    assert submission_lines(p) == ["1 2 3 4 5", "2 3 4 5 1", "5 6 4 3 1", "6 1 2 3 4"]
    rep = error_report(p)
    assert rep["top1"] == 0.75 and rep["top5"] == 0.25   # misses: top-1 rows 0, 1, 3; top-5 row 1
    # the engine's rule (engine.md §3.23): row 0 scores 1/3 at top-1, row 2 1/2; at top-5 row 1 has
    # 4 above, 1 slot for 2 equal: 1/2; row 3: 1 above, 4 slots for 5 equal: 4/5
    assert rep["top1_tie_credit"] == pytest.approx((4 - 1 / 3 - 1 / 2) / 4)
    assert rep["top5_tie_credit"] == pytest.approx((0.5 + 0.2) / 4)
    by_class = {r["class"]: r for r in rep["per_class"]}
    assert by_class[4] == {"class": 4, "name": "class 4", "images": 1, "top1": 0.0, "top5": 0.0}
    assert by_class[5]["top5"] == 1.0 and by_class[0]["top1"] == 1.0
    # show --preds --only-errors draws among the top-1 errors (rows 0, 1, 3), in increasing order
    pytest.importorskip("matplotlib")
    from alexnet_replay.harness.views import pick_images

    assert pick_images(p, 5, 0, True).tolist() == [0, 1, 3]
    assert sorted(pick_images(p, 2, 7, False).tolist()) == pick_images(p, 2, 7, False).tolist()
    assert len(set(pick_images(p, 2, 7, True).tolist()) - {0, 1, 3}) == 0


# -- ensembles -----------------------------------------------------------------------------------------

def test_average_with_given_weights_and_the_searched_weights():
    a = preds_of([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]], [0, 0, 1])
    b = preds_of([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]], [0, 0, 1])
    avg = average([a, b], [1, 3])
    assert avg.probs == pytest.approx(np.array([[0.225, 0.775], [0.575, 0.425], [0.425, 0.575]]))
    assert avg.info["weights"] == [1.0, 3.0]
    with pytest.raises(ReplayError, match="weights must be >= 0, not all 0"):
        average([a, b], [0, 0])
    with pytest.raises(ReplayError, match="are not those of"):
        average([a, preds_of(b.probs, [1, 0, 1])], [1, 1])
    # 6 classes, label 5, so a top-5 error is the label ranked last. Image 0: member 1 is right
    # (0.3 against 0.14), member 2 wrong (0 against 0.2): the average is wrong iff w1 <= 1.25 w2.
    # Image 1: member 2 is sure (0.45 against 0.11), member 1 not (0.1 against 0.18): wrong iff
    # w2 <= 0.235 w1. From (1, 1) (image 0 wrong), member 1 cannot rise above 1; member 2's first
    # value with both right is 0.25 (0.2 leaves image 1 wrong); the next pass changes nothing.
    m1 = preds_of([[.14] * 5 + [.3], [.18] * 5 + [.1]], [5, 5])
    m2 = preds_of([[.2] * 5 + [0.], [.11] * 5 + [.45]], [5, 5])
    w, passes = search_weights([m1, m2])
    assert w == [1.0, 0.25] and [p["top5"] for p in passes] == [0.0, 0.0]
    assert error_report(average([m1, m2], [1, 1]))["top5"] == 0.5
    assert error_report(average([m1, m2], [1, 0.2]))["top5"] == 0.5
    assert error_report(average([m1, m2], w))["top5"] == 0.0
    # the other classes tie, so the label is first or last: top-1 gives the same search
    assert search_weights([m1, m2], metric="top1") == ([1.0, 0.25], [{"weights": [1.0, 0.25], "top1": 0.0}] * 2)
    with pytest.raises(ReplayError, match="--search-on top3: top1 or top5"):
        search_weights([m1, m2], metric="top3")


# -- nearest neighbours --------------------------------------------------------------------------------

def test_nearest_neighbours_on_constructed_features():
    base = np.array([[0, 0, 0], [3, 4, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0]], dtype=np.float32)
    query = np.array([[0, 0, 0], [3, 4, 1], [0.5, 0.5, 0]], dtype=np.float32)
    idx, dist = nearest(query, base, 3)
    # squared distances: query 1 to rows 1, 3, 2: 1, 19, 21; query 2 ties at 0.5 with rows 0, 2, 3
    assert idx.tolist() == [[0, 2, 3], [1, 3, 2], [0, 2, 3]]   # ties by the lower index
    assert dist[0].tolist() == [0, 1, 1] and dist[1, 0] == 1.0
    assert dist[1, 1] == pytest.approx(np.sqrt(19)) and dist[2].tolist() == pytest.approx([np.sqrt(.5)] * 3)
    with pytest.raises(ReplayError, match="do not match"):
        nearest(query[:, :2], base, 1)


# -- the history across a kill, a resume and checkpoint convert --------------------------------------------

def test_history_kept_across_kill_resume_and_convert(digits, tmp_path, capsys):
    whole, _ = train(args_for(fresh(digits, tmp_path / "a", "--epochs=1")), out=io.StringIO())
    history = ckpt.read_checkpoint(whole.options["_last_saved"])[0]["state"]["history"]
    # epoch 1 and the first batch of epoch 2 (§C.4), tests after every 2; batches of 300, 299 images
    assert [e[:4] for e in history["train"]] == [[1, 1, 1, 300], [2, 1, 2, 300], [3, 1, 3, 300], [4, 1, 4, 299],
                                                 [5, 1, 5, 299], [6, 2, 1, 300]]
    assert [e[:2] for e in history["test"]] == [[2, 299], [4, 299], [6, 299]]
    assert [(r[0], r[1]) for r in history["rates"]] == [(0, str(digits / "params.cfg"))]

    class Killed(Exception):
        pass

    def kill(path):
        if path.name == "1.4.npz":
            raise Killed
    with pytest.raises(Killed):
        train(args_for(fresh(digits, tmp_path / "b", "--epochs=1")), out=io.StringIO(), on_save=kill)
    (folder,) = (tmp_path / "b").iterdir()
    resumed, _ = train(args_for(["-f", str(folder), "--epochs=1"]), out=io.StringIO())   # from 1.4: 1.5, 2.1
    again = ckpt.read_checkpoint(resumed.options["_last_saved"])[0]["state"]["history"]
    assert again["train"] == history["train"] and again["test"] == history["test"]
    # the training log's values are what the history holds (per-case means)
    assert history["train"][0][4]["logprob"][1] == pytest.approx(
        float(whole.options["_history"].train[0][4]["logprob"][1]))

    # a resume with other rates (a schedule's step) is recorded, then kept through both conversions
    resumed2, _ = train(args_for(["-f", str(folder), "--epochs=2", f"--layer-params={digits / 'params2.cfg'}"]),
                        out=io.StringIO())
    own = resumed2.options["_last_saved"]
    state = ckpt.read_checkpoint(own)[0]["state"]
    changes = History.from_state(state).rate_changes()
    assert len(changes) == 1 and changes[0]["batches_done"] == 6 and changes[0]["factor"] == 0.1
    assert main(["checkpoint", "convert", own, str(tmp_path / "r.pkl")]) == 0
    rel = read_release_checkpoint(tmp_path / "r.pkl")
    assert len(rel.train_outputs) == len(state["history"]["train"]) == 10   # 3.1 trains, unsaved (§C.4)
    costs, cases = rel.train_outputs[4]
    assert cases == 299 and costs == state["history"]["train"][4][4]       # §C.7: (per-case costs, cases)
    assert rel.test_outputs[-1] == (state["history"]["test"][-1][2], 299)
    assert main(["checkpoint", "convert", str(tmp_path / "r.pkl"), str(tmp_path / "back.npz")]) == 0
    back = ckpt.read_checkpoint(tmp_path / "back.npz")[0]["state"]["history"]
    assert back == state["history"]
    # a file the release wrote has no positions: batches in order, the k-th test after k·testing_freq
    plain = History.from_release(rel.train_outputs, rel.test_outputs, None, {"train_range": "1-5", "test_freq": 2},
                                 "x")
    assert [e[:3] for e in plain.train[4:7]] == [[5, 1, 5], [6, 2, 1], [7, 2, 2]]
    assert [e[0] for e in plain.test] == [2, 4, 6, 8, 10]
    with pytest.raises(ReplayError, match=r"x: key 'model_state.train_outputs\[0\]' is not a \(costs, cases\)"):
        History.from_release([{"logprob": [1]}], [], None, {}, "x")
    # a checkpoint written before histories were kept: its test_outputs, numbered; or nothing to draw
    old = History.from_state({"test_outputs": [{"logprob": [1.5, 0.5, 0.25]}, {"logprob": [1, 0.25, 0]}]})
    assert old.test == [[1, 0, {"logprob": [1.5, 0.5, 0.25]}], [2, 0, {"logprob": [1.0, 0.25, 0.0]}]]
    net = EngineNet(load_config(str(digits / "net.cfg"), str(digits / "params.cfg"), image_size=(3, 28, 28))[0], 1, 0)
    ckpt.save_checkpoint(tmp_path / "old.npz", net, {"epoch": 1, "batchnum": 1})
    assert main(["show", str(tmp_path / "old.npz"), "--out", str(tmp_path / "o"), "--cost"]) == 1
    assert "--cost: this checkpoint holds no cost history" in capsys.readouterr().err


# -- predictions, multiview, files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(digits, tmp_path_factory):
    save = tmp_path_factory.mktemp("run")
    run, _ = train(args_for(fresh(digits, save, "--epochs=1")), out=io.StringIO())
    return run.options["_last_saved"]


def test_multiview_prediction_is_the_mean_of_the_views(digits, trained_run, tmp_path):
    trained = load_trained(trained_run)
    p9 = predict(trained, [6], multiview=True, minibatch=97)
    assert p9.info["views"] == 9 and p9.probs.shape == (299, 10)
    net = build_net(trained, 97)
    dp = make_provider("cifar-cropped", digits / "data", [6], test=True, multiview=True, crop_border=2)
    data, labels = dp.get_batch(6)
    views = []
    for v in range(9):
        cols = slice(v * 299, (v + 1) * 299)
        outs = []
        for s in range(0, 299, 97):
            net.forward([np.ascontiguousarray(data[:, cols][:, s:s + 97]),
                         np.ascontiguousarray(labels[:, cols][:, s:s + 97])], train=False)
            outs.append(np.array(net.acts("probs")))
        views.append(np.concatenate(outs, axis=1))
    assert not np.allclose(views[0], views[4])        # the views differ
    assert p9.probs == pytest.approx(np.mean(views, axis=0).T, abs=1e-6)
    p1 = predict(load_trained(trained_run), [6], multiview=False, minibatch=97)
    assert p1.probs == pytest.approx(views[4].T, abs=1e-7)    # the centre view, (b, b)
    assert np.array_equal(p9.labels, labels[0, :299].astype(int))
    # --features with the multiview test: every view's outputs, view-major, as the release wrote them
    f, fl, fb, _ = layer_outputs(trained, "probs", [6], minibatch=97, multiview=True)
    assert f.shape == (9 * 299, 10) and f[4 * 299:5 * 299] == pytest.approx(views[4].T, abs=1e-6)
    assert np.array_equal(fl, np.tile(p9.labels, 9)) and (fb == 6).all()

    paths = write_predictions(p9, tmp_path / "p")
    back = read_predictions(tmp_path / "p")
    assert np.array_equal(back.probs, p9.probs) and np.array_equal(back.labels, p9.labels)
    info = json.loads(paths["json"].read_text())
    assert info["errors"]["top1"] == error_report(p9)["top1"] and info["views"] == 9
    assert paths["txt"].read_text().splitlines()[0] == " ".join(str(c + 1) for c in ranked(p9.probs[:1], 5)[0])
    # the release's file: written as Python 2's numpy reads it
    stock = py2_readable((tmp_path / "p" / "test_preds_6").read_bytes())
    assert stock["data"].dtype == np.float32 and np.array_equal(stock["data"], p9.probs)
    assert stock["note"] == f"generated from {trained_run}"
    # the release's folder read back, labels from the batches
    (tmp_path / "p" / "predictions.npz").unlink()
    rel = read_predictions(tmp_path / "p", str(digits / "data"))
    assert np.array_equal(rel.probs, p9.probs) and np.array_equal(rel.labels, p9.labels)
    assert not read_predictions(tmp_path / "p").has_labels


def py2_readable(raw: bytes) -> dict:
    """Protocol 2, only numpy's globals under Python 2's names; then read by the stock unpickler."""
    ops = list(pickletools.genops(raw))
    assert raw[:2] == b"\x80\x02" and max(op.proto for op, _, _ in ops) <= 2
    assert {a for op, a, _ in ops if op.name in ("GLOBAL", "STACK_GLOBAL")} == \
        {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pickle.loads(raw, encoding="latin1")


def test_train_test_out_files_are_python2_readable(digits, tmp_path):
    """--test-out wrote numpy 2's pickles (numpy._core, _codecs), which Python 2 cannot read."""
    run, _ = train(args_for(fresh(digits, tmp_path / "s", "--epochs=1", f"--test-out={tmp_path / 'o'}",
                                  "--logreg-name=logprob", "--multiview-test=1", "--test-freq=6")),
                   out=io.StringIO())
    got = py2_readable((tmp_path / "o" / "test_preds_6").read_bytes())
    assert got["data"].shape == (299, 10) and got["data"].dtype == np.float32
    p = predict(load_trained(run.options["_last_saved"]), [6], multiview=True, minibatch=97)
    assert np.array_equal(got["data"], p.probs)     # the driver's test and predict agree, bit for bit


def test_predict_and_average_commands(digits, trained_run, tmp_path, capsys):
    assert main(["predict", trained_run, "--out", str(tmp_path / "a"), "--multiview-test", "1", "--mini", "97"]) == 0
    assert main(["predict", trained_run, "--out", str(tmp_path / "b"), "--mini", "97", "--no-release"]) == 0
    out = capsys.readouterr().out
    assert "299 images, 9 view(s): top-1 error" in out and "299 images, 1 view(s)" in out
    assert not (tmp_path / "b" / "test_preds_6").exists()
    # a release folder (labels from --data-path) and an own file, weights given
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "test_preds_6").write_bytes((tmp_path / "a" / "test_preds_6").read_bytes())
    assert main(["average", str(tmp_path / "rel"), str(tmp_path / "b" / "predictions.npz"), "--weights", "1,3",
                 "--data-path", str(digits / "data"), "--out", str(tmp_path / "avg")]) == 0
    a, b = read_predictions(tmp_path / "a"), read_predictions(tmp_path / "b")
    avg = read_predictions(tmp_path / "avg")
    assert avg.probs == pytest.approx((a.probs + 3 * b.probs) / 4, abs=1e-7)
    out = capsys.readouterr().out
    assert "average: top-1 error" in out and "weights 1, 3 (given)" in out
    assert main(["average", str(tmp_path / "rel"), "--out", str(tmp_path / "x")]) == 1
    assert "searching weights needs labels" in capsys.readouterr().err
    # user mistakes: one line naming the file, no traceback
    for argv, message in [
        (["average", trained_run, "--out", str(tmp_path / "x")],
         f"{trained_run}: not an alexnet-replay predictions file (no 'alexnet-replay predictions' header)"),
        (["average", str(tmp_path / "nothing.npz"), "--out", str(tmp_path / "x")], "nothing.npz: no such file"),
        (["average", str(tmp_path / "a"), str(tmp_path / "b"), "--weights", "1,x", "--out", str(tmp_path / "x")],
         "--weights 1,x: give numbers separated by commas"),
        (["predict", trained_run, "--out", str(tmp_path / "x"), "--logreg-name", "probs"],
         "--logreg-name=probs: not a cost.logreg layer"),
        (["show", trained_run, "--out", str(tmp_path / "x")], "show: name a view"),
        (["show", trained_run, "--out", str(tmp_path / "x"), "--cost", "nll"], "--cost nll: no such cost"),
    ]:
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


# -- the views -----------------------------------------------------------------------------------------

def test_filter_grid_normalises_each_filter_and_towers_are_found():
    from alexnet_replay.harness.views import filter_grid, filter_layers

    w = np.zeros((3 * 2 * 2, 2), dtype=np.float32)
    w[:, 0] = np.arange(12)               # channel-major rows: c, y, x
    w[:, 1] = -5.0                        # a constant filter: all 0, not a division by 0
    g = filter_grid(w, 3, 2)
    assert g.shape == (2, 2, 2, 3)
    assert g[0, 0, 0].tolist() == pytest.approx([0, 4 / 11, 8 / 11]) and g[0, 1, 1, 2] == 1.0
    assert (g[1] == 0).all()
    config, _ = load_config("paper-2012", None)
    assert filter_layers(config, "conv1") == ["conv1a", "conv1b"]
    assert filter_layers(config, "conv2a,fc6") == ["conv2a", "fc6a", "fc6b"]
    with pytest.raises(ReplayError, match="has no weight layer 'conv9'"):
        filter_layers(config, "conv9")


def test_show_views_write_pictures_numbers_and_one_page(digits, trained_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "v"
    assert main(["show", trained_run, "--out", str(out), "--cost", "--filters", "fc10", "--preds", "--count", "3",
                 "--similar", "fc1", "--train-range", "1", "--neighbours", "4", "--features", "fc10",
                 "--mini", "97"]) == 1
    assert "--filters fc10: an fc layer's filters are shown when its input is an RGB image (3·S² rows); it has 13" \
        in capsys.readouterr().err
    assert main(["show", trained_run, "--out", str(out), "--cost", "--filters", "fc1", "--preds", "--count", "3",
                 "--similar", "fc1", "--train-range", "1", "--neighbours", "4", "--features", "fc10",
                 "--mini", "97"]) == 0
    cost = json.loads((out / "cost.json").read_text())
    history = ckpt.read_checkpoint(trained_run)[0]["state"]["history"]
    assert cost["cost"] == "logprob" and [t[0] for t in cost["test"]] == [2, 4, 6]
    assert cost["train"][0][4] == history["train"][0][4]["logprob"]
    preds = json.loads((out / "preds.json").read_text())["images"]
    p = predict(load_trained(trained_run), [6], minibatch=97)
    assert len(preds) == 3 and preds[0]["top5"] == ranked(p.probs[preds[0]["image"]:][:1], 5)[0].tolist()
    similar = json.loads((out / "similar.json").read_text())
    assert len(similar["queries"]) == 3 and len(similar["queries"][0]["nearest"]) == 4
    assert similar["queries"][0]["distances"] == sorted(similar["queries"][0]["distances"])
    feats = np.load(out / "features" / "features.npz")
    assert feats["features"].shape == (299, 10) and load_pickle(out / "features" / "batches.meta")["num_vis"] == 10
    assert load_pickle(out / "features" / "data_batch_6")["data"].shape == (299, 10)
    page = (out / "show.html").read_text()
    assert page.count("src='data:image/png;base64,") == 5 and "src='http" not in page
    grids = np.load(out / "filters.npz")
    assert grids["fc1"].shape == (13, 28, 28, 3) and grids["fc1"].min() == 0 and grids["fc1"].max() == 1
    for name in ("cost", "filters", "preds", "similar", "features"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit):
        main(["show"])
