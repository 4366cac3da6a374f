"""What a data scientist does in JupyterLab, driven in a real browser (Playwright + Debian's
chromium): sign in through the identity provider's own form, open, create, run, save, rename and
copy notebooks through the file browser and the menus. Every step takes a screenshot; the
timings of the steps a person waits for are recorded. Used by tests/browser and
benchmarks/browser_journey.py.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, expect

CHROMIUM = "/usr/bin/chromium"
# Chromium as root in a sandbox with no internet: no sandbox, no GPU, and none of the background
# connections (updates, sync, field trials) that a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
STDERR = "application/vnd.jupyter.stderr"
SPAWN_TIMEOUT_MS = 180_000
RUN_TIMEOUT_MS = 120_000


class LabError(AssertionError):
    pass


def launch(playwright) -> Browser:
    if not Path(CHROMIUM).exists():
        raise LabError(f"{CHROMIUM} is missing: install Debian's chromium (make setup)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


class Lab:
    """One person in one browser context, signed in to one hub."""

    def __init__(self, browser: Browser, hub_url: str, username: str, shots: Path):
        self.hub_url = hub_url.rstrip("/")
        self.username = username
        self.shots = shots
        self.shots.mkdir(parents=True, exist_ok=True)
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.context.set_default_timeout(60_000)
        self.page: Page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        self.timings: dict[str, float] = {}
        self._step = 0

    # -- bookkeeping ------------------------------------------------------------------------
    def shot(self, name: str) -> Path:
        self._step += 1
        path = self.shots / f"{self._step:02d}-{self.username}-{name}.png"
        try:
            self.page.screenshot(path=str(path))
        except Exception:  # noqa: BLE001 - a screenshot must never hide the real failure
            pass
        return path

    @contextmanager
    def step(self, name: str, timed: str | None = None):
        started = time.monotonic()
        try:
            yield
        except Exception:
            self.shot(f"{name}-FAILED")
            raise
        if timed:
            self.timings[timed] = round(time.monotonic() - started, 2)
        self.shot(name)

    def close(self):
        self.context.close()

    # -- signing in -------------------------------------------------------------------------
    def sign_in(self, password: str, login: str = "oidc") -> None:
        page = self.page
        with self.step("login-form"):
            page.goto(f"{self.hub_url}/hub/oauth_login" if login == "oidc" else f"{self.hub_url}/hub/login")
            page.fill("input[name=username]", self.username)
            page.fill("input[name=password]", password)
        with self.step("lab-open", timed="sign_in_to_lab_s"):
            page.locator("button[type=submit], input[type=submit]").first.click()
            page.wait_for_load_state()
            if "/hub/spawn" in page.url and page.locator("form#spawn_form, form[action*='spawn']").count():
                page.locator("form input[type=submit], form button[type=submit]").first.click()
            page.wait_for_url(re.compile(r".*/user/[^/]+/lab.*"), timeout=SPAWN_TIMEOUT_MS)
            page.locator(".jp-DirListing-content").wait_for(timeout=SPAWN_TIMEOUT_MS)
        self.fail_on_dialog("after sign-in")

    # -- dialogs ----------------------------------------------------------------------------
    def dialog_text(self) -> str | None:
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count() and dialog.first.is_visible():
            return dialog.first.inner_text()
        return None

    def fail_on_dialog(self, when: str) -> None:
        text = self.dialog_text()
        if text:
            self.shot("unexpected-dialog")
            raise LabError(f"JupyterLab showed a dialog {when}: {text!r}")

    def no_news_prompt(self) -> None:
        """A managed environment never asks to fetch news from the internet."""
        toast = self.page.get_by_text("official Jupyter news")
        if toast.count() and toast.first.is_visible():
            self.shot("news-prompt")
            raise LabError("JupyterLab asks whether to fetch Jupyter news from the internet")

    # -- the file browser -------------------------------------------------------------------
    def listing_names(self) -> list[str]:
        return [t.strip() for t in self.page.locator(".jp-DirListing-item .jp-DirListing-itemText").all_inner_texts()]

    def go_to_folder(self, path: str) -> None:
        """Walk there through the file browser: the breadcrumb's home, then double-click each folder."""
        page = self.page
        page.locator(".jp-BreadCrumbs-home").first.click()
        # The listing of the folder we came from stays on the page until the home folder's arrives:
        # an item looked up before that may be the old folder's (a notebook of the same name in
        # shared/), and a click on it lands on whatever the new listing puts there.
        expect(page.locator(".jp-BreadCrumbs")).to_have_text(re.compile(r"^[\s/]*$"), timeout=30_000)
        page.wait_for_timeout(300)
        page.locator(".jp-DirListing-item").first.wait_for()
        for part in [p for p in path.strip("/").split("/") if p]:
            item = self.item(part)
            item.dblclick()
            expect(page.locator(".jp-BreadCrumbs")).to_contain_text(part)
            page.wait_for_timeout(300)

    def item(self, name: str):
        return self.page.locator(
            ".jp-DirListing-item", has=self.page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
        )

    def wait_for_item(self, name: str, timeout_ms: int = 30_000) -> None:
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            if name in self.listing_names():
                return
            self.page.locator("button[title='Refresh the file browser.'], [data-command='filebrowser:refresh']").first.click()
            self.page.wait_for_timeout(500)
        raise LabError(f"{name} did not appear in the file browser; it shows {self.listing_names()}")

    # -- notebooks --------------------------------------------------------------------------
    def current_panel(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").last

    def open_from_browser(self, folder: str, name: str) -> None:
        with self.step(f"open-{name}", timed=f"open_{name}_s"):
            self.go_to_folder(folder)
            self.item(name).dblclick()
            self.wait_notebook_ready(name, has_content=True)

    def wait_notebook_ready(self, name: str, has_content: bool = False) -> None:
        """The tab is there, the notebook's cells are shown (an existing notebook: with their text),
        its kernel is idle, and no dialog (such as "File Load Error") came up on the way."""
        page = self.page
        tab = page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.fail_on_dialog(f"opening {name}")
            cells = self.current_panel().locator(".jp-Cell")
            shown = tab.count() and tab.first.inner_text().strip() == name and cells.count()
            if shown and (not has_content or cells.first.inner_text().strip()):
                break
            page.wait_for_timeout(250)
        else:
            self.fail_on_dialog(f"opening {name}")
            raise LabError(f"{name} did not open in JupyterLab (current tab: {tab.all_inner_texts()})")
        self.wait_kernel_idle()
        self.fail_on_dialog(f"opening {name}")

    def wait_kernel_idle(self, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
        """The notebook's kernel is connected and idle: the status bar says "<kernel> | Idle" (the
        toolbar's execution indicator alone also reads idle while the kernel is still starting)."""
        indicator = self.current_panel().locator(".jp-Notebook-ExecutionIndicator")
        expect(indicator).to_have_attribute("data-status", "idle", timeout=timeout_ms)
        status = self.page.locator(".jp-StatusBar-Item", has_text=re.compile(r"\S \| Idle$"))
        expect(status.first).to_be_visible(timeout=timeout_ms)

    def menu(self, top: str, entry: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(top)}$")).click()
        self.page.locator(
            ".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(entry)}")
        ).first.click()

    def run_all(self, name: str) -> None:
        """Run > Run All Cells. A click that reaches no cell (no prompt turns to [*] or [n] within
        10 s: the menu closed before its command ran) is made again, at most twice."""
        with self.step(f"run-all-{name}", timed=f"run_all_{name}_s"):
            prompts = self.current_panel().locator(".jp-CodeCell .jp-InputPrompt")
            for _ in range(3):
                self.menu("Run", "Run All Cells")
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not any(re.search(r"\[(\*|\d+)\]", p) for p in prompts.all_inner_texts()):
                    self.page.wait_for_timeout(200)
                if any(re.search(r"\[(\*|\d+)\]", p) for p in prompts.all_inner_texts()):
                    break
            self.wait_all_executed()

    def wait_all_executed(self, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
        panel = self.current_panel()
        deadline = time.monotonic() + timeout_ms / 1000
        while time.monotonic() < deadline:
            prompts = panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            if prompts and all(re.search(r"\[\d+\]", p) for p in prompts):
                break
            self.page.wait_for_timeout(300)
        else:
            raise LabError(
                f"cells did not finish running: prompts {panel.locator('.jp-CodeCell .jp-InputPrompt').all_inner_texts()}"
            )
        self.wait_kernel_idle()

    def error_outputs(self) -> list[str]:
        """Tracebacks and anything written to stderr (warnings included): a person sees them red."""
        return self.current_panel().locator(f".jp-OutputArea-output[data-mime-type='{STDERR}']").all_inner_texts()

    def outputs_text(self) -> str:
        return "\n".join(self.current_panel().locator(".jp-OutputArea-output").all_inner_texts())

    def new_notebook_from_launcher(self, folder: str) -> None:
        page = self.page
        with self.step("launcher-new-notebook"):
            self.go_to_folder(folder)
            page.locator(".jp-FileBrowser-toolbar button[title^='New Launcher'], [data-command='launcher:create']").first.click()
            page.locator(".jp-Launcher:visible .jp-LauncherCard[data-category='Notebook'][title^='Python 3']").first.click()
            # The new notebook's tab replaces the Launcher's only once the server made the file:
            # wait for it (a fixed pause read "Launcher" on a loaded machine and waited for that).
            deadline = time.monotonic() + 60
            while not self.current_tab().endswith(".ipynb"):
                if time.monotonic() > deadline:
                    self.fail_on_dialog("creating a notebook from the Launcher")
                    raise LabError(f"no new notebook tab after the Launcher's click (current tab: {self.current_tab()!r})")
                page.wait_for_timeout(250)
            self.wait_notebook_ready(self.current_tab())

    def current_tab(self) -> str:
        return self.page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel").first.inner_text().strip()

    def type_and_run_cell(self, code: str, expect_text: str) -> str:
        page = self.page
        with self.step("type-cell"):
            editor = self.current_panel().locator(".jp-Cell").last.locator(".cm-content")
            editor.click()
            page.keyboard.insert_text(code)
        with self.step("first-cell-result", timed="first_cell_result_s"):
            page.keyboard.press("Shift+Enter")
            output = self.current_panel().locator(".jp-Cell").first.locator(".jp-OutputArea-output")
            expect(output.first).to_be_visible(timeout=RUN_TIMEOUT_MS)
            self.wait_kernel_idle()
        text = self.outputs_text()
        if expect_text not in text:
            raise LabError(f"the cell's output {text!r} lacks {expect_text!r}; errors: {self.error_outputs()}")
        return text

    def save_with_name(self, name: str) -> None:
        """Ctrl+S on a new notebook: JupyterLab 4 asks for its name on the first save (a rename)."""
        page = self.page
        with self.step("save-first-time"), self.saving():
            self.current_panel().click()
            page.keyboard.press("Control+s")
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            field = dialog.locator("input:not([type=checkbox])")
            field.fill(name)
            dialog.locator("button.jp-mod-accept").click()
            dialog.wait_for(state="detached")
        expect(page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel").first).to_have_text(name)
        self.wait_saved()

    @contextmanager
    def saving(self):
        """Around a save: wait for JupyterLab's whole save command, not only for the tab to lose
        its unsaved mark. The command is save, (rename), then a checkpoint (POST .../checkpoints),
        and JupyterLab silently ignores another save of the same document until that checkpoint
        has answered: a Ctrl+S pressed in between is lost (seen in CI on a loaded machine, and
        every time with the checkpoint slowed by 4 s)."""
        with self.page.expect_response(
            lambda r: urlsplit(r.url).path.endswith("/checkpoints") and r.request.method == "POST", timeout=60_000
        ) as checkpoint:
            yield
        if checkpoint.value.status >= 300:
            raise LabError(f"the checkpoint after a save answered {checkpoint.value.status}: {checkpoint.value.text()[:300]}")

    def wait_saved(self) -> None:
        expect(self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty")).to_have_count(0, timeout=30_000)
        self.fail_on_dialog("saving")

    def rename_current(self, new_name: str) -> None:
        page = self.page
        with self.step("rename"):
            self.menu("File", "Rename Notebook")
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            dialog.locator("input:not([type=checkbox])").fill(new_name)
            dialog.locator("button.jp-mod-accept").click()
            dialog.wait_for(state="detached")
            expect(page.locator(".lm-TabBar-tab.jp-mod-current .lm-TabBar-tabLabel").first).to_have_text(new_name)
        self.fail_on_dialog("renaming")

    def copy_into(self, folder: str, name: str, target: str) -> None:
        """Right-click > Copy in the file browser, then Paste in the target folder."""
        page = self.page
        with self.step(f"copy-to-{target}"):
            self.go_to_folder(folder)
            self.item(name).click(button="right")
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Copy$")).click()
            self.go_to_folder(target)
            page.locator(".jp-DirListing-content").click(button="right", position={"x": 60, "y": 200})
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Paste$")).click()
            self.wait_for_item(name)
        self.fail_on_dialog("pasting")

    def delete(self, folder: str, name: str) -> None:
        """Right-click > Delete in the file browser ("Move to Trash" where the manager keeps
        deleted files: the notebook bucket's versions), and confirm."""
        page = self.page
        with self.step(f"delete-{name}"):
            self.go_to_folder(folder)
            self.item(name).click()  # select it alone: the folder last opened stays selected otherwise
            self.item(name).click(button="right")
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^(Delete|Move to Trash)$")).first.click()
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            dialog.locator("button.jp-mod-accept").click()
            dialog.wait_for(state="detached")
            expect(self.item(name)).to_have_count(0, timeout=30_000)
        self.fail_on_dialog("deleting")

    def rename_in_browser(self, folder: str, name: str, new_name: str) -> None:
        """Right-click > Rename in the file browser, type the new name in the listing's editor, Enter."""
        page = self.page
        with self.step(f"rename-{name}"):
            self.go_to_folder(folder)
            self.item(name).click()  # select it alone (see delete)
            self.item(name).click(button="right")
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Rename$")).first.click()
            editor = page.locator("input.jp-DirListing-editor")
            editor.wait_for()
            editor.fill(new_name)
            editor.press("Enter")
            expect(self.item(new_name)).to_have_count(1, timeout=30_000)
            expect(self.item(name)).to_have_count(0, timeout=30_000)
        self.fail_on_dialog("renaming")

    # -- files, the server, checkpoints (issue 15: the home) ---------------------------------
    def upload(self, folder: str, local_file: Path) -> None:
        """The file browser's Upload button, a file chooser, the file."""
        page = self.page
        with self.step(f"upload-{local_file.name}"):
            self.go_to_folder(folder)
            with page.expect_file_chooser() as chooser:
                page.locator(
                    ".jp-FileBrowser-toolbar .jp-id-upload button, "
                    ".jp-FileBrowser-toolbar .jp-id-upload jp-button, "
                    ".jp-FileBrowser-toolbar button[title^='Upload']"
                ).first.click()
            chooser.value.set_files(str(local_file))
            self.wait_for_item(local_file.name)
        self.fail_on_dialog("uploading")

    def restart_server(self) -> None:
        """The hub's home page: Stop My Server, then Start My Server; back in JupyterLab."""
        page = self.page
        with self.step("server-stop"):
            page.goto(f"{self.hub_url}/hub/home")
            page.wait_for_load_state("networkidle")  # the button's handler comes with the page's scripts
            stop = page.locator("#stop")
            for _ in range(3):  # a click before the handler was bound does nothing: click again
                stop.click()
                try:
                    expect(stop).to_be_hidden(timeout=SPAWN_TIMEOUT_MS // 3)
                    break
                except AssertionError:
                    continue
            expect(stop).to_be_hidden(timeout=1000)
        with self.step("server-start", timed="server_restart_s"):
            page.locator("#start").click()
            page.wait_for_load_state()
            if "/hub/spawn" in page.url and page.locator("form#spawn_form, form[action*='spawn']").count():
                page.locator("form input[type=submit], form button[type=submit]").first.click()
            # A server slow to stop: Start leads to the hub's "stop pending" page, which reloads
            # itself into "not running" with a Launch button once the stop is done; a person
            # clicks it, and so does this.
            lab_url = re.compile(r".*/user/[^/]+/lab.*")
            deadline = time.monotonic() + SPAWN_TIMEOUT_MS / 1000
            while not lab_url.match(page.url):
                if time.monotonic() > deadline:
                    raise LabError(f"the server did not start again within {SPAWN_TIMEOUT_MS // 1000} s (at {page.url})")
                launch = page.locator("a#start")
                if "/hub/spawn-pending/" in page.url and launch.count() and launch.first.is_visible():
                    launch.first.click()
                page.wait_for_timeout(1000)
            page.locator(".jp-DirListing-content").wait_for(timeout=SPAWN_TIMEOUT_MS)

    def close_all_tabs(self) -> None:
        self.menu("File", "Close All Tabs")
        page = self.page
        for _ in range(5):  # "Save your work" prompts for unsaved notebooks: discard
            dialog = page.locator(".jp-Dialog")
            if not dialog.count():
                break
            dialog.locator("button", has_text=re.compile(r"Discard|Don't Save")).first.click()
            page.wait_for_timeout(300)

    def set_cell_and_save(self, code: str) -> None:
        """Replace the first cell's text of the current notebook and save (Ctrl+S: a save and a
        checkpoint)."""
        page = self.page
        editor = self.current_panel().locator(".jp-Cell").first.locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(code)
        page.keyboard.press("Escape")
        with self.saving():
            page.keyboard.press("Control+s")
        self.wait_saved()

    def revert_to_checkpoint(self, index_from_newest: int, expect_options: int | None = None) -> None:
        """File > Revert Notebook to Checkpoint: JupyterLab lists the checkpoints newest first in a
        picker; choose one, confirm Revert."""
        page = self.page
        with self.step("revert-to-checkpoint"):
            self.menu("File", "Revert Notebook to Checkpoint")
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for()
            select = dialog.locator("select")
            options = select.locator("option").all_inner_texts()
            if len(options) <= index_from_newest or (expect_options is not None and len(options) != expect_options):
                raise LabError(f"the checkpoint picker lists {options}")
            select.select_option(index=index_from_newest)
            dialog.locator("button.jp-mod-accept").click()
            confirm = page.locator(".jp-Dialog", has_text=re.compile("Revert"))
            confirm.wait_for()
            # JupyterLab restores (POST .../checkpoints/<id>) and then reloads the file after the
            # dialog has closed: wait for the restore's answer, not only for the dialog.
            with page.expect_response(
                lambda r: "/checkpoints/" in r.url and r.request.method == "POST", timeout=30_000
            ) as restored:
                confirm.locator("button.jp-mod-accept, button.jp-mod-warn").first.click()
            confirm.wait_for(state="detached")
            if restored.value.status >= 300:
                raise LabError(f"restoring the checkpoint answered HTTP {restored.value.status}")
