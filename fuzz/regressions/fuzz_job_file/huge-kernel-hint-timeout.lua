-- neuro3d_lite: a smaller, faster variant of neuro3d.lua (ELEKTRONN2's examples/neuro3d_lite.py):
-- fewer layers and a smaller input patch, the same data and training setup.
--
--   elektronn make-demo-data examples/demo-data   # once
--   elektronn train examples/neuro3d_lite.lua
--
-- Relative paths below are resolved against the directory of this file.

save_path = '~/elektronn_training/'
save_name = 'neuro3d_lite'

local d_files, l_files = {}, {}
for i = 0, 2 do
  d_files[#d_files + 1] = {('raw_%d.h5'):format(i), 'raw'}
  l_files[#l_files + 1] = {('barrier_%d.h5'):format(i), 'lab'}
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
}
background_processes = 2

preview_data_path = 'demo-data/preview.h5'
preview_kwargs = {export_class = {1}, max_z_pred = 3}
initial_prev_h = 1.0
prev_save_h = 1.0

n_steps = 1e6
max_runtime = 7 * 24 * 3600
history_freq = 200
monitor_batch_size = 30
optimiser = 'Adam'
optimiser_params = {lr = 5e-4, mom = 0.9, beta2 = 0.999, wd = 0.5e-4}
schedules = {lr = {dec = 0.994}}
batch_size = 1

function create_model()
  local inp = nm.Input{{None, 1, 11, 155, 155}, 'b,f,z,x,y', name = 'raw'}

  local out = nm.Conv{inp, 20, {1, 4, 4}, {1, 2, 2}}
  out = nm.Conv{out, 40, {3, 3, 3}, {1, 2, 2}}
  out = nm.Conv{out, 150, {2, 4, 4}, {2, 1, 1}}
  out = nm.Conv{out, 200, {1, 3, 3}}
  out = nm.Conv{out, 200, {1, 31e6, 3}}
  out = nm.Conv{out, 200, {1, 1, 1}}
  uto = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
  local probs = nm.Softmax{out}

  local target = nm.Input_like{probs, override_f = 1, name = 'target'}
  local loss_pix = nm.MultinoulliNLL{probs, target, target_is_sparse = true}
  local loss = nm.AggregateLoss{loss_pix, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}

  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, errors, probs},
  }
end
