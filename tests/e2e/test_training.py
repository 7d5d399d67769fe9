"""Train & load in a real browser: a quick look (the Quick look preset) of a small model runs to the end
with its progress shown through every phase and the panel in view, and a second one is cancelled."""

from __future__ import annotations

import re

import pytest
from e2e_helpers import RUN_MS, assert_healthy, keyed, open_page, screenshot
from playwright.sync_api import Page, expect

from stmgt.training.recipe import weather_recipe

# pytest-playwright 0.10 defines its base_url fixture in a way pytest 9 warns about; not ours to fix.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods")]

TRAIN_MS = 300_000      # 2 × 3 batches, then validation, σ calibration and scoring, each capped at 3 batches
# The Quick look preset's schedule on a model small enough for a busy CPU, big enough that each
# phase lasts long enough for the page's poll to show it.
SMALL = {"Hidden size": 48, "Blocks": 1, "Attention heads": 2}
AFTER_TRAINING = ("Validating", "Calibrating", "Scoring")


def test_train_a_tiny_model_then_cancel_another(page: Page, dashboard: str):
    open_page(page, dashboard, "train", "Train & load")
    screenshot(page, "train")
    form = page.get_by_test_id("stForm")
    recipe = weather_recipe()["train"]                                          # the default: the weather recipe
    expect(form.get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value(str(recipe["epochs"]))
    page.get_by_role("radio", name="Quick look").click()                      # the preset picker
    expect(form.get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value("2")
    expect(form.get_by_role("spinbutton", name="Max batches per epoch (optional)", exact=True)).to_have_value("3")
    for label, value in SMALL.items():
        form.get_by_role("spinbutton", name=label, exact=True).fill(str(value))
    form.get_by_role("textbox", name="Run name").fill("e2e-quick")
    form.get_by_role("button", name="Estimate duration").click()
    expect(page.get_by_text(re.compile(r"^Expected: (about|under)"))).to_be_visible(timeout=RUN_MS)
    start = form.get_by_role("button", name="Start training")
    start.click()

    expect(keyed(page, "train_panel")).to_be_in_viewport(timeout=RUN_MS)      # scrolled up to it
    expect(page.get_by_test_id("stProgress").first).to_contain_text(re.compile(r"\d of 2 epochs"), timeout=RUN_MS)
    screenshot(page, "train_running")
    finished = page.get_by_test_id("stAlertContentSuccess")
    phases, shot = set(), False
    for _ in range(TRAIN_MS // 250):
        if finished.filter(has_text="Finished").count():
            break
        texts = " ".join(page.get_by_test_id("stProgress").all_inner_texts())
        seen = {phase for phase in AFTER_TRAINING if phase in texts}
        if seen - phases and not shot and "Scoring" in seen:
            screenshot(page, "train_scoring")
            shot = True
        phases |= seen
        page.wait_for_timeout(250)
    expect(finished).to_contain_text("Finished", timeout=RUN_MS)
    assert phases & {"Calibrating", "Scoring"}, f"no progress bar after training was seen: {phases}"
    expect(finished).to_contain_text(re.compile(r"MAE at \+1 h [\d.]+ km/h — (better|worse) than persistence"))
    expect(finished).to_contain_text("quick look")
    expect(finished).to_contain_text("Run: e2e-quick")
    assert_healthy(page)
    screenshot(page, "train_finished")
    page.get_by_role("tab", name="Saved runs").click()
    screenshot(page, "train_saved_runs")
    page.get_by_role("tab", name="New training").click()
    keyed(page, "train_job_use").get_by_role("button", name="Use this model").click()
    expect(page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model")).to_have_value(
        re.compile(r"^Run: e2e-quick"), timeout=RUN_MS)

    # A second one over every batch of the epoch, long enough to cancel.
    form.get_by_role("spinbutton", name="Max batches per epoch (optional)", exact=True).fill("")
    form.get_by_role("textbox", name="Run name").fill("e2e-cancelled")
    start.click()
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible(timeout=RUN_MS)
    cancel.click()
    expect(page.get_by_text(re.compile(r"^Cancelled"))).to_be_visible(timeout=RUN_MS)
    assert_healthy(page)
