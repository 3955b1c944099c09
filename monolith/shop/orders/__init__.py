"""Orders: placing one (stock taken atomically), its confirmation job, reading your own."""
