"""Flower 1.40 counterpart of Accord's `simulations/examples/scale-1000.toml`.

1000 simulated clients (virtual SuperNodes on the Ray backend), ~100 synthetic rows each
(quantity skew: Dirichlet(alpha=2) shares of 100,000 rows, at least 2 rows per client),
19 standardized numeric features + intercept, logistic regression trained in numpy
(1 local epoch, mini-batches of 32, lr 0.1, L2 1e-3 on the weights), FedAvg over all 1000
clients (fraction_fit = fraction_evaluate = 1.0, min clients 1000), 5 rounds of fit +
evaluate; evaluation (on each client's own rows, as Accord does) returns accuracy.

    --mode plain   : DefaultWorkflow with Flower's default (plain) fit workflow
    --mode secagg  : DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=31,
                     reconstruction_threshold=16)); in Flower a node's neighbour set
                     includes itself, so 31 shares = 30 neighbours, as in Accord.
                     With --dropout 0.05 (default for secagg) a fixed 5% of the clients
                     per round (50 of 1000) reply with an error instead of their masked
                     vector, i.e. they drop after the share-keys stage, as in Accord.
                     Only fit is securely aggregated (Flower's SecAgg+ workflow covers fit
                     only); evaluate is plain in both modes.

Reproduce (2 actors on 2 cores, num_cpus=1 per ClientApp):
    /tmp/flwr-venv/bin/python docs/flower/flower_scale_1000.py --mode plain
    /tmp/flwr-venv/bin/python docs/flower/flower_scale_1000.py --mode secagg
"""

from __future__ import annotations

import argparse
import json
import time
from logging import INFO

import numpy as np

from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import MessageType, Metrics, ndarrays_to_parameters
from flwr.common.constant import ErrorCode
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    Key,
    Stage,
)
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation
from flwr.supercore import log

SEED = 1000
NUM_CLIENTS = 1000
MEAN_ROWS = 100
ALPHA = 2.0
MIN_ROWS = 2
NUM_FEATURES = 19
ROUNDS = 5
LR = 0.1
L2 = 1e-3
BATCH = 32
LOCAL_EPOCHS = 1


# ----------------------------------------------------------------------------- data
_SIZES: np.ndarray | None = None


def client_sizes(num_clients: int) -> np.ndarray:
    """Quantity skew: Dirichlet(ALPHA) shares of num_clients * MEAN_ROWS rows."""
    global _SIZES  # pylint: disable=global-statement
    if _SIZES is None or len(_SIZES) != num_clients:
        rng = np.random.default_rng(SEED)
        shares = rng.dirichlet(np.full(num_clients, ALPHA))
        _SIZES = np.maximum(
            MIN_ROWS, np.round(shares * num_clients * MEAN_ROWS).astype(int)
        )
    return _SIZES


def ground_truth() -> tuple[np.ndarray, float]:
    rng = np.random.default_rng([SEED, 0xC0FFEE])
    return rng.normal(0.0, 0.5, NUM_FEATURES), float(rng.normal(0.0, 0.5))


def client_data(pid: int, num_clients: int) -> tuple[np.ndarray, np.ndarray]:
    """~100 rows of 19 standard-normal features, labels from a logistic ground truth."""
    n = int(client_sizes(num_clients)[pid])
    rng = np.random.default_rng([SEED, pid])  # fixed seed per client
    w, b = ground_truth()
    x = rng.standard_normal((n, NUM_FEATURES))
    p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
    y = (rng.random(n) < p).astype(np.float64)
    return x, y


# ----------------------------------------------------------------------------- model
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))


def train(w, b, x, y, rng):
    w, b = w.copy(), b.copy()
    for _ in range(LOCAL_EPOCHS):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            idx = order[start : start + BATCH]
            xb, yb = x[idx], y[idx]
            err = sigmoid(xb @ w + b[0]) - yb
            grad_w = xb.T @ err / len(idx) + L2 * w
            grad_b = err.mean()
            w -= LR * grad_w
            b[0] -= LR * grad_b
    return w, b


def evaluate(w, b, x, y):
    p = sigmoid(x @ w + b[0])
    eps = 1e-12
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    acc = float(np.mean((p >= 0.5) == (y > 0.5)))
    return loss, acc


class LogRegClient(NumPyClient):
    def __init__(self, pid: int, num_clients: int) -> None:
        self.pid = pid
        self.x, self.y = client_data(pid, num_clients)

    def get_parameters(self, config):
        return [np.zeros(NUM_FEATURES), np.zeros(1)]

    def fit(self, parameters, config):
        w, b = parameters
        rnd = int(config.get("server_round", 0))
        rng = np.random.default_rng([SEED, self.pid, rnd, 1])
        w, b = train(np.asarray(w, float), np.asarray(b, float), self.x, self.y, rng)
        return [w, b], len(self.y), {}

    def evaluate(self, parameters, config):
        w, b = parameters
        loss, acc = evaluate(np.asarray(w, float), np.asarray(b, float), self.x, self.y)
        return loss, len(self.y), {"accuracy": acc}


def make_client_app(secagg: bool, dropout: float, num_clients: int) -> ClientApp:
    def client_fn(context: Context):
        pid = int(context.node_config["partition-id"])
        return LogRegClient(pid, num_clients).to_client()

    def dropout_mod(msg: Message, ctxt: Context, call_next):
        """Drop a fixed fraction of clients per round after the share-keys stage."""
        if dropout > 0 and msg.metadata.message_type == MessageType.TRAIN:
            cfg = msg.content.config_records.get(RECORD_KEY_CONFIGS)
            if cfg is not None and cfg.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS:
                rnd = int(msg.metadata.group_id)
                pid = int(ctxt.node_config["partition-id"])
                n_drop = int(round(dropout * num_clients))
                dropped = np.random.default_rng([SEED, rnd, 7]).permutation(
                    num_clients
                )[:n_drop]
                if pid in set(dropped.tolist()):
                    return Message(
                        Error(code=ErrorCode.UNKNOWN, reason="simulated dropout"),
                        reply_to=msg,
                    )
        return call_next(msg, ctxt)

    mods = [dropout_mod, secaggplus_mod] if secagg else []
    return ClientApp(client_fn=client_fn, mods=mods)


# ----------------------------------------------------------------------------- server
def weighted_average(metrics: list[tuple[int, Metrics]]) -> Metrics:
    total = sum(n for n, _ in metrics)
    return {"accuracy": sum(n * m["accuracy"] for n, m in metrics) / total}


class Timed:
    """Wraps a workflow to log its wall time per round."""

    def __init__(self, name, wf):
        self.name, self.wf = name, wf

    def __call__(self, grid, context):
        t0 = time.perf_counter()
        self.wf(grid, context)
        acc = context.history.metrics_distributed.get("accuracy", [])
        log(INFO, "TIMING %s %.3fs%s", self.name, time.perf_counter() - t0,
            f" (round {acc[-1][0]} accuracy {acc[-1][1]})"
            if self.name == "evaluate" and acc else "")


def make_server_app(secagg: bool, num_clients: int, rounds: int, summary: dict):
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(
            fraction_fit=1.0,
            fraction_evaluate=1.0,
            min_fit_clients=num_clients,
            min_evaluate_clients=num_clients,
            min_available_clients=num_clients,
            initial_parameters=ndarrays_to_parameters(
                [np.zeros(NUM_FEATURES), np.zeros(1)]
            ),
            on_fit_config_fn=lambda rnd: {"server_round": rnd},
            evaluate_metrics_aggregation_fn=weighted_average,
        )
        legacy = LegacyContext(
            context=context,
            config=ServerConfig(num_rounds=rounds),
            strategy=strategy,
        )
        if secagg:
            from flwr.server.workflow.default_workflows import (
                default_evaluate_workflow,
            )

            fit_wf = SecAggPlusWorkflow(num_shares=31, reconstruction_threshold=16)
            workflow = DefaultWorkflow(
                fit_workflow=Timed("fit(secagg+)", fit_wf),
                evaluate_workflow=Timed("evaluate", default_evaluate_workflow),
            )
        else:
            from flwr.server.workflow.default_workflows import (
                default_evaluate_workflow,
                default_fit_workflow,
            )

            workflow = DefaultWorkflow(
                fit_workflow=Timed("fit(plain)", default_fit_workflow),
                evaluate_workflow=Timed("evaluate", default_evaluate_workflow),
            )
        workflow(grid, legacy)
        hist = legacy.history
        summary["accuracy"] = hist.metrics_distributed.get("accuracy", [])
        summary["loss"] = hist.losses_distributed

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["plain", "secagg"], default="plain")
    ap.add_argument("--clients", type=int, default=NUM_CLIENTS)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--num-cpus", type=float, default=1.0, help="per ClientApp")
    ap.add_argument("--dropout", type=float, default=None,
                    help="secagg only; default 0.05")
    args = ap.parse_args()
    secagg = args.mode == "secagg"
    dropout = (0.05 if args.dropout is None else args.dropout) if secagg else 0.0
    summary: dict = {}
    sizes = client_sizes(args.clients)
    print(f"CONFIG mode={args.mode} clients={args.clients} rounds={args.rounds} "
          f"rows total={int(sizes.sum())} min={int(sizes.min())} "
          f"median={int(np.median(sizes))} max={int(sizes.max())} "
          f"dropout={dropout} num_cpus={args.num_cpus}", flush=True)
    t0 = time.perf_counter()
    run_simulation(
        server_app=make_server_app(secagg, args.clients, args.rounds, summary),
        client_app=make_client_app(secagg, dropout, args.clients),
        num_supernodes=args.clients,
        backend_name="ray",
        backend_config={"client_resources": {"num_cpus": args.num_cpus,
                                             "num_gpus": 0.0}},
    )
    elapsed = time.perf_counter() - t0
    acc = summary.get("accuracy", [])
    print("RESULT " + json.dumps({
        "mode": args.mode,
        "run_simulation_seconds": round(elapsed, 3),
        "rounds_completed": len(acc),
        "final_accuracy": acc[-1][1] if acc else None,
        "accuracy_per_round": acc,
        "loss_per_round": summary.get("loss", []),
    }), flush=True)


if __name__ == "__main__":
    main()
