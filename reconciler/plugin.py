"""`kubectl canaryapp`: control and watch rollouts without touching the spec that Git owns.

Installed with the package as `kubectl-canaryapp`, so kubectl finds it on PATH:

    kubectl canaryapp status web [--watch]     phase, weights, last checks, the judge's metrics, next step
                                               (exit 1: rollout failed)
    kubectl canaryapp promote|abort|pause|resume|retry web
    kubectl canaryapp history web              recorded rollouts and checks
    kubectl canaryapp plan web                 when each remaining step is due, if every check is clean
    kubectl canaryapp backtest web --last 1h   replay the analysis against Prometheus history

Actions are one-shot annotations (`canary.atze.io/<action>=<new value>`): the reconciler handles each once
and records it in the status, and Argo CD leaves annotations it does not manage alone.

The status quotes metric endpoints (error messages, series labels), so everything printed from it is
`printable`: no escape sequence from there moves the cursor, clears the screen or hides a line; a field shown
on one line of a table is made one line first, so no text can forge a line of its own.
"""

from __future__ import annotations

import argparse
import datetime
import secrets
import sys
import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from reconciler import commands
from reconciler.core import plan
from reconciler.core.clock import timestamp
from reconciler.core.desired import baseline_runs
from reconciler.core.machine import about_to_start, seconds_until_check
from reconciler.core.model import (
    GROUP,
    PLURAL,
    VERSION,
    Action,
    CanaryApp,
    CheckRecord,
    MetricRecord,
    Phase,
    RolloutResult,
)
from reconciler.core.text import printable
from reconciler.runtime.reconcile import utc_now

BAR_WIDTH = 20
# A metric's reason in the status' table; the whole reason is in the CanaryApp's status.checks.
REASON_WIDTH = 72
WATCH_SECONDS = 1.0
HANDLED_TIMEOUT_SECONDS = 30.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        api, namespace = _client(args)
        return int(args.handler(api, namespace, args))
    except commands.CommandError as error:
        print(f"kubectl canaryapp: {printable(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl canaryapp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="phase, weights, last checks and the next step")
    status.add_argument("--watch", "-w", action="store_true", help="follow until the rollout ends")
    status.set_defaults(handler=status_command)
    for action in Action:
        sub.add_parser(action.value, help=f"request: {action.value} the rollout").set_defaults(
            handler=lambda api, ns, args, action=action: request_command(api, ns, args, action)
        )
    sub.add_parser("history", help="recorded rollouts and checks").set_defaults(handler=history_command)
    sub.add_parser("plan", help="the remaining steps, if every check is clean").set_defaults(
        handler=plan_command
    )
    replay = sub.add_parser("backtest", help="replay the analysis against Prometheus history")
    commands.add_backtest_window(replay)
    replay.set_defaults(handler=lambda api, ns, args: commands.run_backtest(api, ns, args.name, args))
    for command in sub.choices.values():
        command.add_argument("name", help="the CanaryApp")
        command.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--context", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.add_argument("--kubeconfig", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _client(args: argparse.Namespace) -> tuple[kubernetes.client.ApiClient, str]:
    """The API client and namespace the way kubectl picks them (flags, then the context)."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(
            config_file=args.kubeconfig, context=args.context, client_configuration=configuration
        )
        _, active = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
        contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as error:
        raise commands.CommandError(f"no usable kubeconfig: {error}") from error
    chosen = next((c for c in contexts if c["name"] == args.context), active) if args.context else active
    namespace = args.namespace or (chosen or {}).get("context", {}).get("namespace") or "default"
    return kubernetes.client.ApiClient(configuration), namespace


# status -----------------------------------------------------------------------------------------------


def status_command(api: kubernetes.client.ApiClient, namespace: str, args: argparse.Namespace) -> int:
    app = commands.read_canary_app(api, namespace, args.name)
    if not args.watch:
        print(render_status(app, utc_now()))
        return exit_code(app)
    in_terminal = sys.stdout.isatty()
    shown = ""
    while True:
        text = render_status(app, utc_now())
        if in_terminal:
            sys.stdout.write("\x1b[H\x1b[J" + text + "\n")  # redraw in place
            sys.stdout.flush()
        elif _without_times(text) != _without_times(shown):
            print(text + "\n", flush=True)
        shown = text
        if app.status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.READY) and _applied(app):
            return exit_code(app)
        time.sleep(WATCH_SECONDS)
        app = commands.read_canary_app(api, namespace, args.name)


def exit_code(app: CanaryApp) -> int:
    """Like `kubectl argo rollouts status`: 1 when the last rollout failed, else 0."""
    return 1 if app.status.phase == Phase.FAILED else 0


def _applied(app: CanaryApp) -> bool:
    synced = app.status.condition("StackSynced")
    return synced is not None and synced.status == "True"


def _without_times(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("next:"))


def weight_bar(canary_weight: int, baseline_weight: int = 0) -> str:
    """The traffic split as a bar: `#` the primary's share, `.` the canary's, `:` the baseline's."""
    canary = round(BAR_WIDTH * canary_weight / 100)
    baseline = round(BAR_WIDTH * baseline_weight / 100)
    bar = "#" * (BAR_WIDTH - canary - baseline) + "." * canary + ":" * baseline
    primary_weight = 100 - canary_weight - baseline_weight
    text = f"primary {primary_weight:3d}% [{bar}] canary {canary_weight:3d}%"
    return f"{text} baseline {baseline_weight:3d}%" if baseline_weight else text


def render_status(app: CanaryApp, now: datetime.datetime) -> str:
    status, spec = app.status, app.spec
    paused = " (paused)" if status.paused else ""
    baseline_weight = status.canary_weight if baseline_runs(spec, status) else 0
    lines = [
        f"CanaryApp {app.key}: {status.phase or 'Pending'}{paused}",
        f"  image    {spec.main_image} (primary {status.primary_image or '-'}, "
        f"canary {status.canary_image or '-'})",
        f"  weights  {weight_bar(status.canary_weight, baseline_weight)}",
        f"  message  {status.message}",
    ]
    if status.checks:
        lines.append("  last checks:")
        lines += [f"    {_check_line(check)}" for check in status.checks[-3:]]
        if status.checks[-1].metrics:
            lines += _judgement_lines(status.checks[-1])
    lines.append(f"next: {_next_step(app, now)}")
    return printable("\n".join(lines))


def _judgement_lines(check: CheckRecord) -> list[str]:
    """The judge's verdict on `check` and a table of its metrics: verdict, sizes (samples, or trials) and
    levels (median, or failure rate) of canary and baseline, the canary's shift against the baseline with its
    interval, the p-value, and the reason, shortened."""
    score = "-" if check.score is None else f"{check.score:.1f}"
    header = [
        "metric",
        "verdict",
        "n canary/baseline",
        "level canary/baseline",
        "shift [interval]",
        "p",
        "reason",
    ]
    rows = [header, *(_metric_row(metric) for metric in check.metrics)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    table = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    verdict = _one_line(check.verdict or "-")
    return [f"  judge    {verdict}, score {score} (check at {check.time}, weight {check.weight}%)"] + [
        f"    {line.rstrip()}" for line in table
    ]


def _metric_row(metric: MetricRecord) -> list[str]:
    compared = metric.baseline_size > 0 or metric.baseline_level is not None
    shift = "-"
    if metric.estimate is not None:
        shift = f"{_number(metric.estimate)} [{_number(metric.low)}, {_number(metric.high)}]"
    return [
        _one_line(metric.name),
        _one_line(metric.verdict),
        f"{metric.canary_size}/{metric.baseline_size if compared else '-'}",
        f"{_number(metric.canary_level)}/{_number(metric.baseline_level)}",
        shift,
        _number(metric.p_value, digits=2),
        _shortened(_one_line(metric.reason), REASON_WIDTH),
    ]


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _one_line(text: str) -> str:
    """`text` printable and on one line: runs of whitespace (newlines, tabs) as one space."""
    return " ".join(printable(text).split())


def _shortened(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def _check_line(check: Any) -> str:
    value = _short(check.series[0].value) if check.series else "none"
    requests = "-" if check.canary_requests is None else f"{check.canary_requests:.3g}"
    return (
        f"{check.time} weight {check.weight:3d}% {check.outcome.value:<15} value {value:<8} "
        f"canary requests {requests:<6} {check.message}"
    )


def _short(value: str) -> str:
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


def _next_step(app: CanaryApp, now: datetime.datetime) -> str:
    status = app.status
    if status.paused:
        return "none until resumed (kubectl canaryapp resume)"
    if status.phase == Phase.PROGRESSING and status.canary_weight > 0:
        due = max(seconds_until_check(app.spec, status, now), 0.0)
        target = min(status.canary_weight + app.spec.step_weight, app.spec.max_weight)
        then = "promotion" if status.canary_weight >= app.spec.max_weight else f"{target}%"
        at = timestamp(now + datetime.timedelta(seconds=due))
        return f"check at {at} (in {due:.0f}s), then {then} if clean"
    if status.phase == Phase.PROGRESSING:
        return f"first step ({app.spec.step_weight}%) once the canary is ready"
    if status.phase == Phase.PROMOTING:
        return f"traffic back to the primary once it runs {status.primary_image}"
    if about_to_start(app.spec, status):
        return f"start a canary of {app.spec.main_image} (revision {app.spec.revision})"
    return "nothing to do"


# actions ----------------------------------------------------------------------------------------------


def request_command(
    api: kubernetes.client.ApiClient, namespace: str, args: argparse.Namespace, action: Action
) -> int:
    token = f"{timestamp(utc_now())}-{secrets.token_hex(3)}"
    patch = {"metadata": {"annotations": {action.annotation: token}}}
    custom = kubernetes.client.CustomObjectsApi(api)
    try:
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name, patch)
    except ApiException as error:
        raise commands.api_problem(error, f"annotate CanaryApp {namespace}/{args.name}") from error
    print(f"Requested {action.value} of CanaryApp {namespace}/{args.name} ({action.annotation}={token})")
    deadline = time.monotonic() + HANDLED_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        app = commands.read_canary_app(api, namespace, args.name)
        if app.status.handled_requests.get(action.value) == token:
            print(f"Handled: {printable(app.status.message)}")
            return 0
        time.sleep(0.5)
    print(f"Not handled within {HANDLED_TIMEOUT_SECONDS:.0f}s: is the reconciler running?", file=sys.stderr)
    return 1


# history and plan -------------------------------------------------------------------------------------


def history_command(api: kubernetes.client.ApiClient, namespace: str, args: argparse.Namespace) -> int:
    print(render_history(commands.read_canary_app(api, namespace, args.name)))
    return 0


def render_history(app: CanaryApp) -> str:
    lines = [f"Rollouts of CanaryApp {app.key} (newest last):"]
    for rollout in app.status.rollouts or ():
        weights = " -> ".join(f"{weight}%" for weight in rollout.weights) or "none"
        ended = rollout.finished_at or "-"
        lines.append(
            f"  {rollout.started_at} .. {ended:<20} {rollout.image:<30} {rollout.result.value:<11} {weights}"
        )
        if rollout.reason and rollout.result != RolloutResult.PROGRESSING:
            lines.append(f"      {rollout.reason}")
    lines.append("Checks (newest last):")
    lines += [f"  {_check_line(check)}" for check in app.status.checks or ()]
    return printable("\n".join(lines))


def plan_command(api: kubernetes.client.ApiClient, namespace: str, args: argparse.Namespace) -> int:
    app = commands.read_canary_app(api, namespace, args.name)
    now = utc_now()
    print(f"Plan of CanaryApp {app.key} from {timestamp(now)}, if every check is clean and pods are ready:")
    print(printable(plan.render(plan.plan(app.spec, app.status, now), now)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
