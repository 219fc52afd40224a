"""Sans-IO protocol flows: generators that yield effects and never perform them."""
