"""Multi-touch attribution: journeys, batches, models, report, export."""
