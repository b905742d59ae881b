"""The act layer: images, cloud providers, contextualization, remote runs, watchdogs, journal."""
