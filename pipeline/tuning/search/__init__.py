"""How a study searches: the sampler and pruner (and opening the study), the objective that
trains one trial, and the default budget that sizes trials to the machine."""
