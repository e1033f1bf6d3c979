"""Model definitions."""
from inception_jax.models.googlenet import (GoogLeNet, MODEL_ARGS, TABLE1,
                                            count_params, create_model,
                                            init_variables, model_from_config,
                                            model_kwargs)
