"""The chorale family: the Bach-chorale harmonizer (four voices under a soprano), JSB data, training, evaluation."""
