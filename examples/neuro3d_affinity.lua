-- neuro3d_affinity: neuro3d_lite's network trained on affinity targets (ELEKTRONN2's
-- getbatch(affinities='affinity')): three edges (+z, +x, +y) per voxel, 1 where the voxel and
-- its neighbour belong to the same cell, computed from the demo data's cell IDs (ids_<i>.h5).
--
--   elektronn make-demo-data examples/demo-data   # once
--   elektronn train examples/neuro3d_affinity.lua
--
-- Each edge is a 2-class softmax (n_indep = 3) with a sparse 0/1 target; edges whose neighbour
-- lies outside the label patch arrive as -666 and are ignored like every negative label. A
-- sigmoid output with 3 channels and BinaryNLL takes the same targets.

save_path = '~/elektronn_training/'
save_name = 'neuro3d_affinity'

local d_files, l_files = {}, {}
for i = 0, 2 do
  d_files[#d_files + 1] = {('raw_%d.h5'):format(i), 'raw'}
  l_files[#l_files + 1] = {('ids_%d.h5'):format(i), 'lab'}
end

data_class = 'BatchCreatorImage'
data_init_kwargs = {
  d_path = 'demo-data/',
  l_path = 'demo-data/',
  d_files = d_files,
  l_files = l_files,
  aniso_factor = 2,
  valid_cubes = {2},
}
data_batch_args = {
  grey_augment_channels = {0},
  warp = 0.5,
  warp_args = {sample_aniso = true, perspective = true},
  affinities = 'affinity',
  nga_blur_noise_probability = 0.1,
  noisy_random_erasing_probability = 0.1,
  noisy_random_erasing_args = {num_blob_range = {1, 4}, blob_size_range = {4, 10}},
}
background_processes = 2

n_steps = 1e6
max_runtime = 7 * 24 * 3600
history_freq = 200
monitor_batch_size = 30
optimiser = 'Adam'
optimiser_params = {lr = 5e-4, mom = 0.9, beta2 = 0.999, wd = 0.5e-4}
schedules = {lr = {dec = 0.995}}
batch_size = 1

function create_model()
  local inp = nm.Input{{None, 1, 11, 155, 155}, 'b,f,z,x,y', name = 'raw'}

  local out = nm.Conv{inp, 20, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 40, {3, 3, 3}, {1, 2, 2}}
  out = nm.Conv{out, 150, {2, 4, 4}, {2, 1, 1}}
  out = nm.Conv{out, 200, {1, 3, 3}}
  out = nm.Conv{out, 200, {1, 3, 3}}
  out = nm.Conv{out, 200, {1, 1, 1}}
  out = nm.Conv{out, 6, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out, n_indep = 3}

  local target = nm.Input_like{probs, override_f = 3, name = 'target'}
  local loss_pix = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{loss_pix, name = 'loss'}

  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, probs},
  }
end
