"""``axtrain hdl``, ``axtrain trace`` and ``axtrain compare`` (docs/bringup.md)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("hdl")
@click.argument("bundle", required=False, type=click.Path(path_type=Path))
@click.option("--arch", "arch_file", type=click.Path(dir_okay=False, path_type=Path), help="Generate from an architecture file instead of a bundle (no testbench).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write (replaced with --force).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
def hdl(bundle: Path | None, arch_file: Path | None, out: Path, force: bool) -> None:
    """Generate a SystemVerilog package and C header from the ISA and BUNDLE's architecture (or
    --arch FILE); from a bundle also a self-checking testbench and its hex images."""
    from axtrain.bringup.hdl import generate
    from axtrain.errors import ConfigError
    from axtrain.formats.arch import load_arch
    from axtrain.formats.bundle import load_bundle

    if (bundle is None) == (arch_file is None):
        raise ConfigError("give exactly one of BUNDLE or --arch FILE")
    if out.exists() and not force:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if bundle is not None:
        b = load_bundle(bundle)
        names = generate(out, b.arch, b, f" and bundle {b.manifest.content_sha256 or bundle.name}", overwrite=force)
    else:
        assert arch_file is not None
        names = generate(out, load_arch(arch_file), None, f" and architecture {arch_file.name}", overwrite=force)
    click.echo(f"hdl: {len(names)} files -> {out}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")
