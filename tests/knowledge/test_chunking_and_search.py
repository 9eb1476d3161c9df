"""Documents become passages a model can read alone, and a caller's question finds the right one."""

from __future__ import annotations

from parley.engine.knowledge import MAX_WORDS, KnowledgeIndex, Passage, chunk_text

FAQ = """# Bright Smile Dental

## Opening hours
We are open **Monday to Friday** from 9 am to 5 pm, and on Saturdays from 9 to noon.
We are closed on Sundays and public holidays.

## Prices
- A check-up costs 60 dollars.
- A cleaning costs 90 dollars. See [our price list](https://example.com/prices).

## Parking
Free parking is behind the building, entrance on Elm_Street.
"""


def _essay(paragraphs: int, sentences: int) -> str:
    return "\n\n".join(
        " ".join(f"Paragraph {p} sentence {s} talks about topic{p} at some length." for s in range(sentences))
        for p in range(paragraphs)
    )


def test_markdown_sections_become_readable_passages_named_by_their_heading() -> None:
    passages = chunk_text(FAQ, "faq.md")
    texts = [p.text for p in passages]
    assert texts[0].startswith("Opening hours: We are open Monday to Friday")
    assert "**" not in texts[0] and "#" not in " ".join(texts)
    prices = next(t for t in texts if t.startswith("Prices:"))
    assert "our price list" in prices and "https://" not in prices
    assert "Elm_Street" in texts[-1]
    assert all(p.source == "faq.md" for p in passages)
    assert [p.index for p in passages] == list(range(len(passages)))


def test_long_text_is_cut_on_sentence_boundaries_within_the_word_limits() -> None:
    passages = chunk_text(_essay(paragraphs=12, sentences=9))
    assert len(passages) > 5
    assert all(p.words <= MAX_WORDS for p in passages)
    assert all(p.words >= 60 for p in passages[:-1])
    assert all(p.text.endswith(".") for p in passages), "no passage ends mid-sentence"


def test_a_sentence_longer_than_a_passage_is_split_rather_than_dropped() -> None:
    run_on = " ".join(f"word{i}" for i in range(400))
    passages = chunk_text(run_on)
    assert sum(p.words for p in passages) == 400
    assert max(p.words for p in passages) <= MAX_WORDS


def test_empty_and_blank_documents_give_nothing() -> None:
    assert chunk_text("") == []
    assert chunk_text("\n\n   \n") == []
    assert len(KnowledgeIndex([])) == 0
    assert KnowledgeIndex([]).search("anything", 500) == []


def test_questions_find_the_passage_that_answers_them() -> None:
    index = KnowledgeIndex.from_documents([("faq.md", FAQ), ("essay.txt", _essay(4, 6))])
    cases = {
        "Are you open on Sunday?": "closed on Sundays",
        "How much is a cleaning?": "cleaning costs 90",
        "Where can I park my car?": "Free parking",
    }
    for question, expected in cases.items():
        best = index.search(question, max_tokens=300)
        assert best and expected in best[0].text, question


def test_small_talk_retrieves_nothing_rather_than_something_unrelated() -> None:
    index = KnowledgeIndex.from_documents([("faq.md", FAQ)])
    assert index.search("yes", 300) == []
    assert index.search("ok thank you", 300) == []


def test_results_fit_the_token_budget() -> None:
    index = KnowledgeIndex.from_documents([("essay.txt", _essay(10, 9))])
    budget = 150
    found = index.search("topic3 sentence length paragraph", budget, count_tokens=lambda t: len(t.split()))
    assert found
    assert sum(p.words for p in found) <= budget
    assert index.search("topic3", 0) == []


def test_passages_are_plain_values() -> None:
    assert Passage("a b c").words == 3
