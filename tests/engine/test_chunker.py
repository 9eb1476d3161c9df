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


def test_a_line_the_model_ends_is_spoken_without_waiting_for_a_full_stop() -> None:
    chunker = ClauseChunker()
    assert chunker.push("Sure! ") == ["Sure!"]
    assert chunker.push("Here's a long story about a dragon:") == []
    assert chunker.push("\n\nOnce upon a time") == ["Here's a long story about a dragon:"]
    assert chunker.push(" there was a dragon.\n1") == ["Once upon a time there was a dragon."]
    assert chunker.push(". Red\n2. Blue") == ["1. Red"]
    assert chunker.flush() == ["2. Blue"]


def test_a_long_first_sentence_is_cut_before_a_phrase_so_its_start_is_heard_sooner() -> None:
    text = "Parley is an open-source platform for voice agents that runs fully offline. It is free for all."
    pieces = feed(ClauseChunker(), text)
    assert pieces[0] == "Parley is an open-source platform"
    # Only the first piece: the rest is spoken in whole sentences while the first one plays.
    assert pieces[1:] == ["for voice agents that runs fully offline.", "It is free for all."]


def test_a_phrase_cut_needs_enough_words_before_it_and_a_whole_word() -> None:
    assert feed(ClauseChunker(), "We open from nine to five.") == ["We open from nine to five."]
    chunker = ClauseChunker()
    assert chunker.push("The sky is blue bec") == []  # "bec…" may be any word yet
    assert chunker.push("ause it scatters") == ["The sky is blue"]
    # "of" and "to" join what comes before: no cut inside "the capital of France".
    assert feed(ClauseChunker(), "The capital city of France is Paris.") == [
        "The capital city of France is Paris."
    ]


def test_a_quotation_starts_a_piece_of_its_own() -> None:
    text = 'The joke is "Why did the tomato turn red? Because it saw the salad dressing!"'
    assert feed(ClauseChunker(), text) == [
        "The joke is",
        '"Why did the tomato turn red?',
        'Because it saw the salad dressing!"',
    ]
    assert feed(ClauseChunker(), '"Hello" is what I said.') == ['"Hello" is what I said.']
