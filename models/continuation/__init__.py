"""The continuation family: the Transformer that answers a phrase (model, tokenizer's sampling, live C decoding),
the Markov responder, the player's style and touch read from the phrase, training and the held-out evaluation."""
