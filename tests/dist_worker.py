"""One process of the data-parallel tests (tests/test_backends.py): ``python dist_worker.py
OUT.json TRAIN-ARGS...`` under RANK/WORLD_SIZE/MASTER_*; trains through the driver as
``alexnet-replay train`` does, recording a digest of the weights after every step, and
writes {"rank", "digests", "weights"} to OUT.json (ranks' digests compared by the test).
``DIST_WORKER_DIE_AT=K`` (rank 1 only) kills this process with SIGKILL at step K."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

import numpy as np

from alexnet_replay.engine import WEIGHT_LAYER_TYPES
from alexnet_replay.errors import ReplayError
from alexnet_replay.harness import backends
from alexnet_replay.harness.distributed import weights_digest
from alexnet_replay.harness.driver import train
from alexnet_replay.harness.options import add_train_arguments
from alexnet_replay.modernize.port.trainer import PortNet


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    rank = int(os.environ.get("RANK", "0"))
    die_at = int(os.environ.get("DIST_WORKER_DIE_AT", "0"))
    digests: list[str] = []

    def recording(cls):
        step = cls.train_step

        def train_step(self, data):
            costs = step(self, data)
            digests.append(weights_digest(self))
            if die_at and rank == 1 and len(digests) == die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return costs
        cls.train_step = train_step

    recording(backends.EngineShare)
    recording(PortNet)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    try:
        _, net = train(parser.parse_args(argv))
    except ReplayError as exc:
        print(f"alexnet-replay: error: {exc}", file=sys.stderr)
        return 2
    layers = [l for l in net.config.layers.values() if l.type in WEIGHT_LAYER_TYPES]
    weights = {f"{l.name}/{i}": net.array("weights", l.name, i).tolist() for l in layers for i in range(len(l.weights))}
    weights.update({f"{l.name}/biases": net.array("biases", l.name).tolist() for l in layers})
    with open(out, "w") as f:
        json.dump({"rank": rank, "digests": digests, "weights": weights}, f)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
