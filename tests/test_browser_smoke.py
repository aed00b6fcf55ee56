"""The harness itself: the app loads in Chromium and draws a Plotly chart with every
non-local request blocked (the `page` fixture fails the test if any was attempted)."""
from conftest import wait_for_app, wait_for_plotly


def test_app_draws_a_plotly_chart_offline(page, page_log):
    page.goto("/")
    wait_for_app(page)
    wait_for_plotly(page, 1)
    assert page.locator(".js-plotly-plot .main-svg").count() >= 1
    assert page_log.blocked_requests == []
    assert page_log.page_errors == []
