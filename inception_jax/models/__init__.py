"""Model definitions."""
from inception_jax.models.googlenet import (GoogLeNet, TABLE1, create_model,
                                            count_params, init_variables,
                                            validate_model_args)
