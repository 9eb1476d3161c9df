from parley.engine.chunker import ClauseChunker


def feed(chunker: ClauseChunker, text: str) -> list[str]:
    pieces: list[str] = []
    for token in text.split(" "):
        pieces += chunker.push(token + " ")
    return pieces + chunker.flush()


def test_first_clause_is_cut_early_then_whole_sentences() -> None:
    pieces = feed(
        ClauseChunker(), "Well, the capital of France, as you may know, is Paris. It is lovely in spring."
    )
    assert pieces[0] == "Well, the capital of France,"
    assert pieces[-1] == "It is lovely in spring."
    assert (
        " ".join(pieces) == "Well, the capital of France, as you may know, is Paris. It is lovely in spring."
    )


def test_short_sentence_is_spoken_as_soon_as_it_ends() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Sure! ") == ["Sure!"]
    assert chunker.push("Paris") == []
    assert chunker.flush() == ["Paris"]


def test_long_run_on_sentence_is_split_at_a_clause() -> None:
    words = " ".join(["word"] * 30) + ", and more words to finish"
    pieces = feed(ClauseChunker(max_words=25), "Yes. " + words)
    assert len(pieces) == 3
    assert all(len(p.split()) <= 31 for p in pieces)


def test_decimal_numbers_do_not_end_a_sentence() -> None:
    assert feed(ClauseChunker(), "It costs 3.50 dollars today.") == ["It costs 3.50 dollars today."]


def test_a_long_first_sentence_without_commas_is_cut_before_a_phrase() -> None:
    text = "Parley is an open-source platform for real-time voice agents that runs fully offline. It is free."
    pieces = feed(ClauseChunker(), text)
    assert pieces == [
        "Parley is an open-source platform",
        "for real-time voice agents that runs fully offline.",
        "It is free.",
    ]


def test_the_phrase_cut_waits_for_the_word_to_be_written() -> None:
    chunker = ClauseChunker()
    assert chunker.push("The sky looks blue to us be") == [], "'be' may still become 'because'"
    assert chunker.push("cause air scatters blue light.") == ["The sky looks blue to us"]
    assert chunker.push(" ") == ["because air scatters blue light."]


def test_short_sentences_and_units_are_not_cut() -> None:
    for whole in ("The capital of Japan is Tokyo.", "We are open from Monday to Friday."):
        assert feed(ClauseChunker(), whole) == [whole]
    # Only the first piece is cut at a phrase: later sentences stay whole.
    pieces = feed(ClauseChunker(), "Sure. We are open every day of the week until late at night.")
    assert pieces == ["Sure.", "We are open every day of the week until late at night."]
