"""The leaderboard as people read it: the terminal table and the rendered page, in Debian's chromium
(headless, and driven by playwright), with hostile names shown as text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import register_build
from typer.testing import CliRunner

from flexrec_bench.cli import app
from leaderboard.schema import Leaderboard
from leaderboard.submit import submit

runner = CliRunner()


def test_cli_table_and_render_in_chromium(ml100k, tmp_path, results):
    lb = register_build(tmp_path / "lb.json", ml100k)
    for m in ("random", "star"):
        r = runner.invoke(app, ["submit", str(results[m]), "--leaderboard", str(lb), "--data", str(ml100k)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["leaderboard", "--leaderboard", str(lb), "--need", "interest"])
    assert r.exit_code == 0 and "star" in r.output and "random" in r.output and "[" in r.output
    site = tmp_path / "site"
    r = runner.invoke(app, ["leaderboard", "render", "--leaderboard", str(lb), "--out", str(site)])
    assert r.exit_code == 0, r.output
    page = (site / "index.html").read_text()
    assert page.count('class="entry"') == 2 and "http" not in page.replace("http-equiv", "")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("chromium not installed")
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=3000"]
    dom = subprocess.run(args + ["--dump-dom", (site / "index.html").as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'data-ready="1"' in dom.stdout and 'data-rows="2"' in dom.stdout, dom.stderr[-2000:]
    assert "data-errors" not in dom.stdout and "Uncaught" not in dom.stderr
    # a hostile model name is text, never markup (the template autoescapes every value)
    board = json.loads(lb.read_text())
    board["entries"][0]["results"]["model"]["name"] = '<script>window.__pwned=1</script><b onmouseover="x">m</b>'
    lb2 = tmp_path / "lb2.json"
    lb2.write_text(json.dumps(board))
    r = runner.invoke(app, ["leaderboard", "render", "--leaderboard", str(lb2), "--out", str(tmp_path / "site2")])
    assert r.exit_code == 0, r.output
    page2 = (tmp_path / "site2" / "index.html").read_text()
    assert page2.count("<script>") == 1 and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page2
    dom2 = subprocess.run(args + ["--dump-dom", (tmp_path / "site2" / "index.html").as_uri()], capture_output=True,
                          text=True, timeout=120)
    assert 'data-ready="1"' in dom2.stdout and "<b onmouseover" not in dom2.stdout
    shot = tmp_path / "leaderboard.png"
    subprocess.run(args + ["--window-size=1280,900", f"--screenshot={shot}", (site / "index.html").as_uri()],
                   capture_output=True, timeout=120, cwd=tmp_path)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_page_in_a_real_browser_tabs_sorting_paper_rows_and_escaping(ml100k, tmp_path, results):
    """Debian's chromium, driven by playwright: a tab per dataset x need, a column sorted by a click,
    the paper's rows beside the measured ones, and a hostile model name shown as text."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/run does)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from leaderboard.render import render

    lb = register_build(tmp_path / "lb.json", ml100k)
    for m in ("random", "star"):
        submit(results[m], lb, ml100k)
    board = json.loads(lb.read_text())
    hostile = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    board["entries"][0]["results"]["model"]["name"] = hostile
    page = render(Leaderboard.model_validate(board), tmp_path / "site")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            pg = browser.new_page()
            pg.goto(page.as_uri())
            assert pg.evaluate("document.body.dataset.ready") == "1" and pg.evaluate("window.__errors.length") == 0
            assert pg.evaluate("window.__pwned") is None
            tabs = [t.inner_text().split(" ")[0:3] for t in pg.query_selector_all("button.tab")]
            assert ["ml-100k", "·", "interest"] in tabs and ["kuairec", "·", "interest"] in tabs
            panel = pg.locator(".panel.active")
            assert panel.get_attribute("data-dataset") == "ml-100k"  # the first tab with entries opens
            assert hostile in panel.locator("td.name").first.inner_text() or hostile in panel.inner_text()
            col = 2 + 1  # model, vs best, ndcg@5, ndcg@10 -> the ndcg@10 header is the 4th
            header = panel.locator("th").nth(col)
            assert header.inner_text().startswith("ndcg@10")

            def values():
                return [float(v) for v in panel.locator("tr.entry").evaluate_all(
                    f"rows => rows.map(r => r.children[{col}].dataset.value)")]

            header.click()
            desc = values()
            assert desc == sorted(desc, reverse=True) and len(desc) == 2
            header.click()
            assert values() == sorted(desc)
            assert panel.locator("td.mark").evaluate_all("c => c.map(x => x.dataset.value)").count("best") == 1
            # every entry again in the paper's convention (over all instances, undefined = 0)
            comparable = panel.locator("tr.comparable-row")
            assert comparable.count() == 2 and "ours, paper's convention" in comparable.first.inner_text()
            pg.click("button.tab:has-text('kuairec · interest')")
            active = pg.locator(".panel.active")
            assert active.get_attribute("data-dataset") == "kuairec"
            text = active.inner_text()
            assert "reported in paper" in text and "Qwen2.5-3B-Instruct + FlexRec" in text and "0.597" in text
            pg.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_the_terminal_table_escapes_control_characters(ml100k, tmp_path, results):
    lb = register_build(tmp_path / "lb.json", ml100k)
    submit(results["random"], lb, ml100k)
    d = json.loads(lb.read_text())
    d["entries"][0]["results"]["model"]["display_name"] = "evil\x1b[2Jname"  # a hand edit
    lb.write_text(json.dumps(d))
    r = runner.invoke(app, ["leaderboard", "--leaderboard", str(lb)])
    assert "\x1b" not in r.output and "evil\\x1b[2Jname" in r.output
