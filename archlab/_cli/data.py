"""``archlab data download|audit``: get datasets from their official sources; audit a dataset."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Download datasets and audit them for near-duplicates and leaks.", no_args_is_help=True)


@data_app.command("audit")
def audit_cmd(
    dataset: str = typer.Argument(..., help="registered dataset name, e.g. digits, mnist, cifar10, segmentation"),
    root: str = typer.Option(
        None, "--data-root", "--root", help="data root, as `archlab train --data-root` (--root: alias; default $ARCHLAB_DATA or ~/.cache/archlab/data)"
    ),
    options: list[str] = typer.Option([], "--option", "-O", help="dataset option KEY=VALUE, e.g. -O image_size=28"),
    study: Path = typer.Option(None, "--study", help="take the data section (split settings) from this study YAML"),
    val_fraction: float = typer.Option(None, "--val-fraction"),
    test_fraction: float = typer.Option(None, "--test-fraction"),
    split_seed: int = typer.Option(None, "--split-seed"),
    threshold: float = typer.Option(None, "--threshold", help="cosine distance of the candidate search (default 0.08 for the thumbnail descriptor, 0.005 for the histogram hash)"),
    min_similarity: float = typer.Option(None, "--min-similarity", help="verified pixel similarity (aligned NCC) a candidate pair needs (default 0.996, calibrated in bench/results/audit_calibration.json); 0 or less: no verification"),
    descriptor: str = typer.Option("thumbnail", "--descriptor", help="candidate descriptor: thumbnail (default) or histogram (the seed's block-histogram hash)"),
    grid: int = typer.Option(7, "--grid", help="blocks per image side of the histogram hash"),
    bins: int = typer.Option(8, "--bins", help="histogram bins per block"),
    out: Path = typer.Option(Path("audit"), "--out", "-o", help="folder for pairs.csv, summary.json, clean_split.json"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:1"),
) -> None:
    """Find near-duplicates inside each split, leaks across train/val/test, and contradicting labels.

    The splits are the ones a run or study uses (same dataset options and split settings); the
    written clean_split.json is what a config's `data.clean_split` points at.
    """

    from archlab._validation import parse_yaml_value, validate_config
    from archlab.analysis.audit import audit_splits, write_audit
    from archlab._cli.console import console
    from archlab.errors import ConfigError
    from archlab.train.config import DataConfig, TrainConfig
    from archlab.train.engine import prepare_data, resolve_device

    data: dict = {}
    if study is not None:
        from archlab.study.config import load_study

        entries = load_study(study).dataset_configs()
        # a study's dataset label (two image folders: label clinic_a / clinic_b) or its name
        match = [d for label, d in entries.items() if label == dataset] or [
            d for d in entries.values() if d.name == dataset]
        if not match:
            raise ConfigError(f"{study} has no dataset {dataset!r}; its datasets: {', '.join(entries)}")
        data = match[0].model_dump()
        dataset = match[0].name
    data["name"] = dataset
    data["clean_split"] = None  # audit the raw splits
    for key, value in (("root", root), ("val_fraction", val_fraction), ("test_fraction", test_fraction),
                       ("split_seed", split_seed)):
        if value is not None:
            data[key] = value
    opts = dict(data.get("options") or {})
    for item in options:
        if "=" not in item:
            raise ConfigError(f"--option expects KEY=VALUE (e.g. image_size=28), got {item!r}")
        key, raw = item.split("=", 1)
        opts[key.strip()] = parse_yaml_value(raw, f"--option {key.strip()}")
    data["options"] = opts
    cfg = TrainConfig(data=validate_config(DataConfig, data, "archlab data audit"))
    splits = prepare_data(cfg)
    from archlab.analysis.audit import DEFAULT_MIN_SIMILARITY

    verify = min_similarity is None or min_similarity > 0
    result = audit_splits(splits, threshold=threshold, grid=grid, bins=bins, device=resolve_device(device),
                          descriptor=descriptor, verify=verify,
                          min_similarity=DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity)
    paths = write_audit(result, out, data=cfg.data.model_dump(mode="json"))
    s = result.summary()
    console.print(
        f"{sum(s['sizes'].values()):,} images audited in {s['seconds']:.1f} s: {s['pairs']:,} near-duplicate pairs "
        f"({s['leak_pairs']:,} across splits, {s['contradicting_pairs']:,} with contradicting {s['label_kind']} labels)",
        highlight=False,
    )
    for name, count in s["pair_counts"].items():
        console.print(f"  {name}: {count:,}", highlight=False)
    console.print(f"  kept after cleaning: {s['kept']}", highlight=False)
    console.print(f"wrote {paths['pairs']}, {paths['summary']}, {paths['clean_split']}", highlight=False)
    console.print(f"use it with  data: {{clean_split: {paths['clean_split']}}}", highlight=False)


@data_app.command("download")
def download_cmd(
    name: str = typer.Argument(..., help="dataset: mnist, fashion_mnist, kmnist, emnist, qmnist, cifar10, cifar100, svhn, stl10, quickdraw"),
    root: str = typer.Option(
        None, "--data-root", "--root", help="data root, as `archlab train --data-root` (--root: alias; default $ARCHLAB_DATA or ~/.cache/archlab/data)"
    ),
    categories: str = typer.Option(None, "--categories", help="quickdraw: comma-separated categories, e.g. cat,dog"),
    per_class: int = typer.Option(None, "--per-class", help="quickdraw: fetch only the first N drawings per category"),
    mirror: str = typer.Option(None, "--mirror", help="base URL replacing the official hosts (default $ARCHLAB_MIRROR)"),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="keep .tar.gz/.zip archives after extracting them"),
) -> None:
    """Download a dataset from its official source: resumable, checksum-verified, atomic."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from archlab._cli.console import console
    from archlab.data.download import download

    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(url: str, done: int, total: int | None) -> None:
            if url not in tasks:
                tasks[url] = bar.add_task(url.rsplit("/", 1)[-1], total=total)
            bar.update(tasks[url], completed=done, total=total)

        result = download(name, root, categories=categories, per_class=per_class, mirror=mirror,
                          keep_archive=keep_archive, progress=progress)
    for f in result.files:
        console.print(f"{f.status:>10}  {f.path}  ({f.nbytes:,} bytes)  {f.url}", highlight=False, markup=False)
    if result.extracted:
        console.print(f"extracted {len(result.extracted)} files into {result.folder}", highlight=False, markup=False)
    console.print(f"{name} is ready in {result.folder}", highlight=False, markup=False)
