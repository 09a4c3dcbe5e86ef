"""The model page's plain words, from the committed model cards."""

from __future__ import annotations

from common.settings import REPO_ROOT
from edge.model_page import bottom_line
from inference.model_format import CARD_FILE


def test_the_committed_cards_say_no_edge_in_their_bottom_line():
    for card in (REPO_ROOT / "models").glob(f"*/*/{CARD_FILE}"):
        words = bottom_line(card.read_text(encoding="utf-8"))
        assert words["demonstrated"] is False, card
        assert words["summary"].startswith("**No demonstrated edge"), card


def test_a_card_claiming_an_edge_or_saying_nothing():
    claimed = "# Card\n\n## Bottom line\n\n**Beats every baseline.** Details.\n\n## More\n"
    assert bottom_line(claimed) == {
        "demonstrated": True,
        "summary": "**Beats every baseline.** Details.",
    }
    assert bottom_line("# Card without one\n") == {"demonstrated": False, "summary": None}
    assert bottom_line("") == {"demonstrated": False, "summary": None}
