"""Recipes that build the shipped artefacts: `codec` (`make codec`). Nothing below them imports them."""
