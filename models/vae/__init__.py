"""The phrase VAE family: variations and morphs of the player's phrases, data, training, evaluation."""
