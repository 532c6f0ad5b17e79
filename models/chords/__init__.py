"""The lead-sheet chord model: melody -> chord symbols (data, vocabulary, network, training, evaluation)."""
