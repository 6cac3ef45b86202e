-- demo_patches: image classification through BatchCreatorImage's img-scalar mode (a target node
-- without spatial axes: one label per patch). Is the centre pixel of a 21x21 demo EM patch on a
-- cell boundary? The demo data's patches_<i>.h5 hold a stack of 23x23 patches ("raw", one per
-- z-slice) and their labels ("lab", one row per slice); border_mode 'crop' cuts each slice to
-- the network's 21x21 input around its centre, and flips/swaps augment it.
--
--   elektronn make-demo-data examples/demo-data   # once (again if demo-data has no patches_*.h5)
--   elektronn train examples/demo_patches.lua
--
-- On 2 CPU cores 500 steps take about 10 s and reach roughly 5-10 % errors (0.7 -> 0.2 loss).
--
-- Relative paths below are resolved against the directory of this file.

save_path = '~/elektronn_training/'
save_name = 'demo_patches'

local d_files, l_files = {}, {}
for i = 0, 2 do
  d_files[#d_files + 1] = {('patches_%d.h5'):format(i), 'raw'}
  l_files[#l_files + 1] = {('patches_%d.h5'):format(i), 'lab'}
end

data_class = 'BatchCreatorImage'
data_init_kwargs = {
  d_path = 'demo-data/',
  l_path = 'demo-data/',
  d_files = d_files,
  l_files = l_files,
  valid_cubes = {2},
  border_mode = 'crop',
}
data_batch_args = {grey_augment_channels = {0}, warp = 0}
background_processes = 2

n_steps = 3000
max_runtime = 600
history_freq = 250
monitor_batch_size = 100
optimiser = 'Adam'
optimiser_params = {lr = 1e-3, mom = 0.9, beta2 = 0.999, wd = 1e-5}
batch_size = 20

function create_model()
  local inp = nm.Input{{None, 1, 21, 21}, 'b,f,x,y', name = 'raw'}
  local out = nm.Conv{inp, 16, {4, 4}, {2, 2}}  -- 18x18 -> 9x9
  out = nm.Conv{out, 32, {3, 3}}                -- 7x7
  out = nm.Perceptron{out, 64, flatten = true}  -- (b, 64)
  out = nm.Perceptron{out, 2, activation_func = 'lin'}
  local probs = nm.Softmax{out}

  local target = nm.Input_like{probs, override_f = 1, name = 'target'}  -- (b, 1) 0/1
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, errors, probs},
  }
end
