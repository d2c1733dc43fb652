def build_model(input_shape, num_classes):
    raise RuntimeError("the architect went home")
