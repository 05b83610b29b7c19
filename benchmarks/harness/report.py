"""The harness's markdown report: one table per run, ratios against the baseline and the peer."""

from __future__ import annotations


def _clients(mode: str) -> str:
    """A row's load, as its mode names it: ``served, 8 clients`` -> ``8 clients``."""
    return mode.rsplit(", ", 1)[-1]


def report(args, machine, results, per_photo, stages, shed, peer=None, agreement=None) -> str:
    baselines = {m.workload: m for _, m in results if m.mode.startswith("baseline")}
    peers = {
        (m.workload, _clients(m.mode)): m
        for _, m in results
        if peer is not None and m.mode.startswith(f"{peer.name}, ")
    }
    settings = ", ".join(f"{k}={v}" for k, v in args.env.items()) or "defaults"
    lines = [
        f"Machine: {machine}. Pack: `{args.pack_dir.name}`, detector at 640x640. "
        f"Server settings: {settings}. "
        f"Sequential passes: {1 if args.quick else args.repeats} over each photo set; "
        f"concurrent clients: {args.duration:g} s each.",
    ]
    if peer is not None:
        lines.append(
            f"Peer: {peer.name} at {peer.url}, driven alternately with ours pass by pass; its "
            f"largest-face embeddings agree with ours on every identity photo (lowest cosine "
            f"{agreement:.5f})."
        )
    lines += [
        "",
        "CPU ms/request: CPU time of the side measured (a server: all its processes; in process: "
        "this one) over the row's run, per request.",
        "",
        "| workload | photos | mode | requests | req/s | faces/s | median ms | p99 ms | "
        "x baseline (faces/s) | CPU ms/request | x peer (req/s) | errors | GPU util | "
        "rows per pass (mean x passes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in results:
        base = baselines[m.workload]
        ratio = m.faces_per_s / base.faces_per_s if base.faces_per_s else float("nan")
        gpu = "" if m.gpu_util is None else f"{m.gpu_util:.0f}%"
        cpu = "" if m.cpu_ms_per_request is None else f"{m.cpu_ms_per_request:.1f}"
        against = peers.get((m.workload, _clients(m.mode)))
        x_peer = (
            f"{m.requests_per_s / against.requests_per_s:.2f}"
            if m.mode.startswith("served") and against and against.requests_per_s
            else ""
        )
        lines.append(
            f"| {m.workload} | {label} | {m.mode} | {len(m.latencies)} | {m.requests_per_s:.1f} | "
            f"{m.faces_per_s:.1f} | {m.percentile_ms(0.5):.1f} | {m.percentile_ms(0.99):.1f} | "
            f"{ratio:.2f} | {cpu} | {x_peer} | {m.errors} | {gpu} | {m.batches} |"
        )
    if per_photo:
        peer_columns = " peer faces/s | x peer |" if peer is not None else ""
        lines += [
            "",
            "Many faces in one request (`/v1/multi-embeddings`, maxResults 750, one client):",
            "",
            f"| photo | faces | baseline faces/s | served faces/s | x baseline |{peer_columns}",
            "|---|---|---|---|---|" + ("---|---|" if peer is not None else ""),
        ]
        for photo, (base, served, *other) in per_photo.items():
            line = (
                f"| {photo} | {base.faces // max(1, len(base.latencies))} | "
                f"{base.faces_per_s:.1f} | {served.faces_per_s:.1f} | "
                f"{served.faces_per_s / base.faces_per_s:.2f} |"
            )
            if other:
                theirs = other[0].faces_per_s
                line += f" {theirs:.1f} | {served.faces_per_s / theirs:.2f} |"
            lines.append(line)
    lines += [
        "",
        "One `/v1/feature` request in stages (median over the single-face photos, one client, "
        "from the `Server-Timing` header):",
        "",
        *stages,
        "",
        f"Responses shed with 503 during the run: {shed}",
    ]
    return "\n".join(lines) + "\n"
