"""`dse deploy env/engine`: what the compose deployment needs before `docker-compose build` and `up`."""

from __future__ import annotations

from pathlib import Path

import typer

from dse_platform.cli.console import echo
from dse_platform.config import PROJECT_DIR, get_settings
from dse_platform.deploy import compose_env, engine

app = typer.Typer()
deploy = typer.Typer(help="The compose deployment (docker-compose.yml): secrets, engine, base image.",
                     no_args_is_help=True)
app.add_typer(deploy, name="deploy")


@deploy.command("env")
def env_cmd(
    output: Path = typer.Option(PROJECT_DIR / ".env", help="Where to write it (mode 0600)."),
    force: bool = typer.Option(False, help="Replace an existing file (its secrets are lost)."),
) -> None:
    """Write .env from .env.example with every required secret generated."""
    path = compose_env.write(output, PROJECT_DIR / ".env.example", force=force)
    echo(f"wrote {path} (mode 0600): the Airflow UI's admin password is its AIRFLOW_ADMIN_PASSWORD line")


@deploy.command("engine")
def engine_cmd() -> None:
    """Start Debian's dockerd when none answers, make the base image when absent, copy the CA bundle."""
    daemon = engine.start_daemon(get_settings().home / "deploy" / "dockerd.log")
    if daemon.process is not None:
        echo(f"dockerd started (pid {daemon.process.pid}, log {daemon.log}); stop it with `kill {daemon.process.pid}`")
    made = engine.ensure_base_image(echo)
    echo(f"base image {engine.BASE_IMAGE}: {'made from Debian packages' if made else 'present'}")
    bundle = engine.copy_ca_bundle(PROJECT_DIR)
    if bundle:
        echo(f"CA bundle copied to {bundle} (git-ignored; builds trust it for PyPI and Maven Central)")
    echo("next: docker-compose build && docker-compose up -d")
