-- mnist: image classification of 26x26 digit (or Fashion-MNIST) crops with a small 2-D CNN;
-- ELEKTRONN2's examples/mnist.py, with batch normalisation in the three Conv layers. After
-- training the layers switch to their running statistics (reference §2.4), and the test-set
-- accuracy the log reports at the end is measured with them. Those estimates move by 0.0005 of
-- each batch's (ELEKTRONN2's constant), so they need a few thousand steps to settle: a run cut
-- short after a few hundred steps reports a test accuracy well below its monitored one.
--
--   elektronn train examples/mnist.lua
--
-- The data are MNIST-format IDX files; without data_init_kwargs = {path = ...} they are read
-- from Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist).

save_path = '~/elektronn_training/'
save_name = 'mnist'

data_class = 'MNISTData'
background_processes = 2

-- ELEKTRONN2 stopped at 30000 steps; on 2 CPU cores that takes about a minute here, so this
-- trains for up to 9 minutes of training time instead, decaying the learning rate.
n_steps = 1000000
max_runtime = 540      -- seconds
history_freq = 2000
monitor_batch_size = 200
schedules = {lr = {dec = 0.985}}
optimiser = 'Adam'
optimiser_params = {lr = 2e-4, mom = 0.9, beta2 = 0.99, wd = 5e-4}
batch_size = 20

function create_model()
  local inp = nm.Input{{None, 1, 26, 26}, 'b,f,x,y', name = 'raw'}

  local out = nm.Conv{inp, 12, {3, 3}, {2, 2}, batch_normalisation = 'train'}  -- 24x24 -> 12x12
  out = nm.Conv{out, 36, {3, 3}, {2, 2}, batch_normalisation = 'train'}       -- 10x10 -> 5x5
  out = nm.Conv{out, 64, {3, 3}, batch_normalisation = 'train'}               -- 3x3
  out = nm.Perceptron{out, 200, flatten = true}  -- (b, 200)
  out = nm.Perceptron{out, 10, activation_func = 'lin'}
  local probs = nm.Softmax{out}

  local target = nm.Input_like{probs, override_f = 1, name = 'target'}  -- (b, 1) class ids
  local loss_pix = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{loss_pix, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}

  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, errors, probs},
  }
end
