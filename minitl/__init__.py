"""minitl: transfer learning built from scratch (skeleton; the engine lands next)."""
