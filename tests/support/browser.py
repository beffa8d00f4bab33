"""Driving the Airflow and MLflow web UIs with Playwright, for the UI tests.

Playwright runs Debian's Chromium (``/usr/bin/chromium``, installed by ``make test-deps``);
it never downloads a browser of its own. Locators go by ARIA role, label and visible text,
and every wait is on a condition with a timeout (no fixed sleeps).

Verified on 2026-11-24 against Airflow 3.3.2 (SimpleAuthManager) and MLflow 3.17.2, with
Chromium 156 and Playwright 1.65.2:

* Airflow login (``/auth/login``): textboxes "Username" and "Password", button "Sign in".
* DAG page ``/dags/<dag_id>``: button "Trigger Dag" opens a dialog with a "Run Parameters"
  accordion. Each param is a ``group`` whose ``<label>`` reads ``<key> *`` (or the param's
  ``title``); its input is named ``element_<key>``. String -> textbox (no accessible name:
  the label's ``for`` points elsewhere), integer/number -> ``spinbutton`` (clamped to
  minimum/maximum when it loses focus, so a range violation never reaches the server),
  array of strings -> textarea "Enter each string on a new line", other arrays and objects
  -> a Monaco JSON editor (``code``), boolean -> switch (``checkbox``), enum -> ``combobox``.
  A param with a default counts as required, so an emptied field or an empty array shows
  "This field is required" under it (the JSON editor also "Value must be an array.") and
  the footer's "Trigger" button is disabled. A paused DAG adds a checked "Unpause <dag> on
  trigger" box, left as it is. Invalid JSON in the editor does not disable the button: the
  last valid value is sent, which is why :func:`airflow_trigger` compares the stored conf.
* A param failing its JSON schema on the server: POST /api/v2/dags/<id>/dagRuns answers
  400, a toast "Failed to Trigger Dag" appears and the dialog shows an alert
  (``data-testid="error-alert"``) reading e.g. "400 Bad Request Invalid input for param
  symbol: 'G' is too short Failed validating 'minLength' in schema: {...} On instance: 'G'".
* On success the UI routes to ``/dags/<dag_id>/runs/<run_id>``; the URL changes before the
  run page renders (its "Task Instances" tab shows when it has).
* MLflow model version page ``#/models/<name>/versions/<n>``: "Aliases :" row with button
  "Add" (or "Edit aliases"), a dialog "Add/Edit alias for model version <n>" with a tag
  ``combobox`` (type, Enter) and button "Save aliases" (POST
  /ajax-api/2.0/mlflow/registered-models/alias); an alias held by another version shows the
  alert 'The "<alias>" alias is also being used on version <m>. Adding it to this version
  will remove it from version <m>.'

Run states are read from Airflow's public REST API (``/api/v2``) with a JWT from
``POST /auth/token``, never by scraping; triggering always goes through the UI.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Browser, Locator, Page, Playwright, Response, expect

from dse_platform.config import PROJECT_DIR

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium's own connections hit the closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS_DIR = PROJECT_DIR / "var" / "test-artifacts"
#: How long a UI step may take; generous because the services share a busy machine with the tests.
TIMEOUT_MS = 60_000
RUN_FINISHED = frozenset({"success", "failed"})


class TriggerRejected(AssertionError):
    """The trigger form refused the params (client-side check) or Airflow answered with an error."""


# ---- browser --------------------------------------------------------------------------------
def chromium(playwright: Playwright, **launch: Any) -> Browser:
    """Launch Debian's headless Chromium through Playwright (never a downloaded browser)."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: run `make test-deps` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, **launch)


def new_page(browser: Browser, width: int = 1400, height: int = 1000,
             login: tuple[str, str] | None = None) -> Page:
    """A page in a fresh context, sized for readable screenshots, with :data:`TIMEOUT_MS` as its timeouts.

    ``login`` answers HTTP basic-auth challenges (the MLflow server's), as a user typing it would.
    """
    credentials = {"username": login[0], "password": login[1]} if login else None
    page = browser.new_context(viewport={"width": width, "height": height}, http_credentials=credentials).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.set_default_navigation_timeout(TIMEOUT_MS)
    return page


def screenshot(page: Page, path: str | Path) -> Path:
    """Save a full-page PNG; a relative ``path`` lands under var/test-artifacts/. Returns the file."""
    target = Path(path)
    if not target.is_absolute():
        target = ARTIFACTS_DIR / target
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    return target


# ---- Airflow --------------------------------------------------------------------------------
def airflow_login(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in on SimpleAuthManager's login page (no-op when the session is already signed in)."""
    page.goto(f"{base_url}/", timeout=TIMEOUT_MS)
    user_box = page.get_by_role("textbox", name="Username")
    dags_link = page.get_by_role("link", name="Dags", exact=True)
    expect(user_box.or_(dags_link).first).to_be_visible(timeout=TIMEOUT_MS)
    if dags_link.is_visible():
        return
    user_box.fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    failed = page.get_by_text(re.compile(r"invalid|incorrect|failed", re.IGNORECASE))
    expect(dags_link.or_(failed).first).to_be_visible(timeout=TIMEOUT_MS)
    if not dags_link.is_visible():
        raise AssertionError(f"Airflow login as {username!r} failed: {failed.first.inner_text()}")


def _param_group(dialog: Locator, key: str) -> Locator:
    """The form field (``role=group``) of param ``key``: by its label, or by its input's name."""
    label = dialog.page.locator("label").get_by_text(re.compile(rf"^\s*{re.escape(key)}\s*\*?\s*$"))
    by_name = dialog.page.locator(f'[name="element_{key}"]')
    return dialog.get_by_role("group").filter(has=label.or_(by_name)).first


def _fill_json_editor(group: Locator, value: Any) -> None:
    """Replace a Monaco JSON editor's text with ``value`` as JSON.

    Typing key by key does not work: the form re-formats the text after every keystroke
    that parses (``[3`` becomes ``[\\n  3\\n]``). Emptying the editor can leave ``[]``
    behind (an empty field resets to the default), so it is cleared until only the line
    number 1 shows, then the whole JSON is inserted in one input event.
    """
    page = group.page
    code = group.get_by_role("code")
    code.click()
    for _ in range(3):
        page.keyboard.press("ControlOrMeta+a")
        page.keyboard.press("Backspace")
        try:
            expect(code).to_have_text(re.compile(r"^\s*1\s*$"), timeout=2_000)
            break
        except AssertionError:
            continue
    page.keyboard.insert_text(json.dumps(value))
    bad_json = group.get_by_text(re.compile(r"SyntaxError|Invalid JSON"))
    if bad_json.count():
        raise TriggerRejected(f"the JSON editor did not take {value!r}: {bad_json.first.inner_text()}")


def _fill_param(dialog: Locator, key: str, value: Any) -> None:
    """Set one param in the trigger form, choosing the control its type renders as."""
    group = _param_group(dialog, key)
    # the JSON editor (Monaco) loads after its field: wait until some control has rendered
    controls = ["code", "spinbutton", "combobox", "checkbox", "textbox"]
    any_control = group.get_by_role(controls[0])
    for role in controls[1:]:
        any_control = any_control.or_(group.get_by_role(role))
    expect(any_control.first).to_be_attached(timeout=TIMEOUT_MS)
    if isinstance(value, bool):
        box = group.get_by_role("checkbox")
        if box.is_checked() != value:
            box.dispatch_event("click")  # the real input is visually hidden under the switch
        expect(box).to_be_checked(checked=value)
    elif isinstance(value, int | float):
        spin = group.get_by_role("spinbutton")
        spin.fill(str(value))
        spin.press("Tab")  # commit: the number input parses (and clamps) on blur
    elif isinstance(value, list | dict):
        if group.get_by_role("code").count():
            _fill_json_editor(group, value)
        else:
            group.get_by_role("textbox").fill("\n".join(str(v) for v in value))
    elif isinstance(value, str) and group.get_by_role("combobox").count():
        group.get_by_role("combobox").click()
        dialog.page.get_by_role("option", name=value, exact=True).click()
    elif isinstance(value, str) or value is None:
        group.get_by_role("textbox").fill(value or "")
    else:
        raise TypeError(f"param {key}: no form control for a {type(value).__name__}")


def airflow_trigger(page: Page, base_url: str, dag_id: str, params: Mapping[str, Any]) -> str:
    """Trigger ``dag_id`` through the UI's Trigger dialog with ``params`` typed into its form.

    Handles string, number, boolean, enum, array (textarea of strings, or JSON editor) and
    object params. Returns the new run's id (the UI's POST answer). Raises
    :class:`TriggerRejected` with the UI's message when the form blocks submission or Airflow
    rejects a param (see :func:`airflow_trigger_error`), and when the conf Airflow stored
    differs from ``params`` (e.g. a number clamped to its maximum by the form).
    """
    page.goto(f"{base_url}/dags/{quote(dag_id, safe='')}", timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Trigger Dag", exact=True).click(timeout=TIMEOUT_MS)
    dialog = page.get_by_role("dialog").filter(has=page.get_by_role("heading", name=re.compile("^Trigger Dag")))
    expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
    section = dialog.get_by_role("button", name="Run Parameters")
    if params and section.get_attribute("aria-expanded") == "false":
        section.click()
    for key, value in params.items():
        _fill_param(dialog, key, value)
    footer = dialog.get_by_role("contentinfo")
    submit = footer.get_by_role("button", name="Trigger", exact=True)
    ready = footer.get_by_role("button", name="Trigger", exact=True, disabled=False)
    expect(ready.or_(_field_errors(dialog)).first).to_be_visible(timeout=TIMEOUT_MS)
    if submit.is_disabled():
        raise TriggerRejected(f"the trigger form refused the params: {airflow_trigger_error(page)}")

    def is_trigger_post(resp: Response) -> bool:
        return resp.request.method == "POST" and resp.url.split("?")[0].endswith(f"/dags/{dag_id}/dagRuns")

    with page.expect_response(is_trigger_post, timeout=TIMEOUT_MS) as answer:
        submit.click()
    resp = answer.value
    if not resp.ok:
        raise TriggerRejected(f"Airflow rejected the trigger (HTTP {resp.status}): {airflow_trigger_error(page)}")
    run = resp.json()
    stored = run.get("conf") or {}
    differ = {k: (v, stored.get(k)) for k, v in params.items() if stored.get(k) != v}
    if differ:
        raise TriggerRejected(f"the form sent other values than asked, and run {run['dag_run_id']} started with "
                              "them (asked->sent): " + ", ".join(f"{k}={a!r}->{s!r}" for k, (a, s) in differ.items()))
    # the UI routes to the new run's page; its tabs show once it has rendered (not the DAG page any more)
    page.wait_for_url(re.compile(rf"/dags/{re.escape(dag_id)}/runs/"), timeout=TIMEOUT_MS)
    expect(page.get_by_role("link", name="Task Instances", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    return run["dag_run_id"]


def _field_errors(scope: Page | Locator) -> Locator:
    """Error texts under invalid form fields (Chakra's ``Field.ErrorText``, announced ``aria-live``)."""
    return scope.locator('[data-part="error-text"]')


def airflow_trigger_error(page: Page, timeout_ms: float = 10_000) -> str:
    """The error the open Trigger dialog shows: Airflow's 400 alert, else the invalid fields' messages.

    A param failing its JSON schema gives the server's text, e.g. "400 Bad Request Invalid
    input for param symbol: 'G' is too short Failed validating 'minLength' in schema: ...";
    a client-side failure gives "<label>: <message>" lines (e.g. "symbols: This field is required").
    """
    dialog = page.get_by_role("dialog")
    alert = dialog.get_by_test_id("error-alert")
    errors = _field_errors(dialog)
    expect(alert.or_(errors).first).to_be_visible(timeout=timeout_ms)
    if alert.count():
        return " ".join(alert.first.inner_text().split())
    lines = []
    for group in dialog.get_by_role("group").filter(has=_field_errors(page)).all():
        label = group.locator("label").first.inner_text().replace("*", "").strip()
        lines.append(f"{label}: {' '.join(_field_errors(group).inner_text().split())}")
    return "\n".join(lines)


def airflow_token(base_url: str, username: str, password: str) -> str:
    """A JWT for Airflow's public REST API, from ``POST /auth/token`` (SimpleAuthManager)."""
    resp = httpx.post(f"{base_url}/auth/token", json={"username": username, "password": password},
                      timeout=TIMEOUT_MS / 1000)
    resp.raise_for_status()
    return resp.json()["access_token"]


def airflow_run_state(base_url: str, token: str, dag_id: str, run_id: str) -> str:
    """A DAG run's state (queued, running, success, failed) from ``GET /api/v2/dags/{id}/dagRuns/{run}``."""
    resp = httpx.get(f"{base_url}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                     headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT_MS / 1000)
    resp.raise_for_status()
    return resp.json()["state"]


def airflow_wait_run(base_url: str, token: str, dag_id: str, run_id: str, timeout_s: float = 300,
                     poll_s: float = 1.0) -> str:
    """Poll the REST API until the run has finished; return its final state ("success" or "failed").

    A slow or dropped answer (busy api-server) is retried until the deadline, then TimeoutError.
    """
    deadline = time.monotonic() + timeout_s
    state = "unknown"
    while True:
        try:
            state = airflow_run_state(base_url, token, dag_id, run_id)
        except httpx.TransportError as exc:
            state = f"unknown ({type(exc).__name__})"
        if state in RUN_FINISHED:
            return state
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} run {run_id} still {state} after {timeout_s:.0f}s")
        time.sleep(poll_s)


# ---- MLflow ---------------------------------------------------------------------------------
def _mlflow_version_page(page: Page, base_url: str, model_name: str, version: int) -> Locator:
    """Open a model version's page and wait until it shows; returns its ``main`` region."""
    page.goto(f"{base_url}/#/models/{quote(model_name, safe='')}/versions/{version}", timeout=TIMEOUT_MS)
    main = page.get_by_role("main")
    expect(main.get_by_role("heading", name=f"Version {version}", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    expect(main.get_by_text("Aliases", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    return main


def mlflow_alias_version(base_url: str, model_name: str, alias: str) -> int | None:
    """The version an alias points at, from MLflow's REST API (None when the alias is unset).

    Logs in as MLflow's own client library does: with the login registry.configure put in the environment.
    """
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    resp = httpx.get(f"{base_url}/api/2.0/mlflow/registered-models/alias",
                     params={"name": model_name, "alias": alias}, timeout=TIMEOUT_MS / 1000,
                     auth=(user, password or "") if user else None)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return int(resp.json()["model_version"]["version"])


def mlflow_set_alias(page: Page, base_url: str, model_name: str, version: int, alias: str) -> None:
    """Give ``version`` the ``alias`` in the model version page's alias editor, save, and check it.

    An alias held by another version moves (the dialog warns about that). Afterwards
    MLflow's REST API must report ``alias`` -> ``version``, else AssertionError.
    """
    main = _mlflow_version_page(page, base_url, model_name, version)
    if not main.get_by_role("status", name=alias, exact=True).count():
        main.get_by_role("button", name=re.compile(r"^(Add|Edit aliases)$")).first.click()
        dialog = page.get_by_role("dialog", name=f"Add/Edit alias for model version {version}")
        expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
        dialog.get_by_role("combobox").fill(alias)
        # the tag select lists the typed alias as an option (in its hidden accessibility listbox)
        expect(page.get_by_role("option", name=alias, exact=True).first).to_be_attached(timeout=TIMEOUT_MS)
        page.keyboard.press("Enter")
        expect(dialog.get_by_role("status", name=alias, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
        with page.expect_response(lambda r: r.request.method == "POST"
                                  and r.url.endswith("/mlflow/registered-models/alias"), timeout=TIMEOUT_MS) as ans:
            dialog.get_by_role("button", name="Save aliases").click()
        if not ans.value.ok:
            raise AssertionError(f"MLflow refused alias {alias!r}: HTTP {ans.value.status} {ans.value.text()}")
        expect(dialog).to_be_hidden(timeout=TIMEOUT_MS)
        expect(main.get_by_role("status", name=alias, exact=True)).to_be_visible(timeout=TIMEOUT_MS)
    actual = mlflow_alias_version(base_url, model_name, alias)
    if actual != int(version):
        raise AssertionError(f"alias {alias!r} of {model_name} points at version {actual}, not {version}")


def mlflow_screenshot(page: Page, base_url: str, model_name: str, version: int, path: str | Path) -> Path:
    """Screenshot a model version's page once it has rendered (see :func:`screenshot` for ``path``)."""
    _mlflow_version_page(page, base_url, model_name, version)
    return screenshot(page, path)
