-- neuro3d: 3-D cell-boundary ("barrier") detection in electron-microscopy volumes; a
-- line-by-line translation of ELEKTRONN2's examples/neuro3d.py.
--
--   elektronn make-demo-data examples/demo-data   # once: raw_*.h5, barrier_*.h5, preview.h5
--   elektronn check examples/neuro3d.lua          # the model's shapes, fields of view, strides
--   elektronn train examples/neuro3d.lua
--
-- Relative paths below are resolved against the directory of this file.

save_path = '~/elektronn_training/'  -- training directory: save_path/save_name
save_name = 'neuro3d'

-- Training data: three raw/label cube pairs; cube 2 is held out for validation.
local d_files, l_files = {}, {}
for i = 0, 2 do
  d_files[#d_files + 1] = {('raw_%d.h5'):format(i), 'raw'}     -- {file, HDF5 dataset}
  l_files[#l_files + 1] = {('barrier_%d.h5'):format(i), 'lab'}
end

data_class = 'BatchCreatorImage'
data_init_kwargs = {
  d_path = 'demo-data/',
  l_path = 'demo-data/',
  d_files = d_files,
  l_files = l_files,
  aniso_factor = 2,   -- z voxels are twice as long as x/y voxels
  valid_cubes = {2},
}
data_batch_args = {
  grey_augment_channels = {0},
  warp = 0.5,         -- half of the examples are warped
  warp_args = {sample_aniso = true, perspective = true},
}
background_processes = 2

-- Previews: predictions on an unseen cube, written as images while training runs.
preview_data_path = 'demo-data/preview.h5'
preview_kwargs = {export_class = {1}, max_z_pred = 3}
initial_prev_h = 1.0  -- hours until the first preview
prev_save_h = 1.0     -- hours between previews

-- The training run.
n_steps = 1e6
max_runtime = 7 * 24 * 3600  -- seconds
history_freq = 200           -- steps between monitoring, checkpoints and plots
monitor_batch_size = 30
optimiser = 'Adam'
optimiser_params = {lr = 5e-4, mom = 0.9, beta2 = 0.999, wd = 0.5e-4}
schedules = {lr = {dec = 0.995}}  -- multiply lr by 0.995 every 1000 steps
batch_size = 1

function create_model()
  local in_sh = {None, 1, 23, 185, 185}
  local inp = nm.Input{in_sh, 'b,f,z,x,y', name = 'raw'}

  local out = nm.Conv{inp, 20, {1, 6, 6}, {1, 2, 2}}
  out = nm.Conv{out, 30, {1, 5, 5}, {1, 2, 2}}
  out = nm.Conv{out, 40, {1, 5, 5}}
  out = nm.Conv{out, 80, {4, 4, 4}, {2, 1, 1}}

  out = nm.Conv{out, 100, {3, 4, 4}}
  out = nm.Conv{out, 100, {3, 4, 4}}
  out = nm.Conv{out, 150, {2, 4, 4}}
  out = nm.Conv{out, 200, {1, 4, 4}}
  out = nm.Conv{out, 200, {1, 4, 4}}

  out = nm.Conv{out, 200, {1, 1, 1}}
  out = nm.Conv{out, 2, {1, 1, 1}, activation_func = 'lin'}
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
