-- unet3d_litelite: the smallest 3-D U-Net of ELEKTRONN2's examples (unet3d_litelite.py): the
-- topology of unet3d_lite.lua with fewer channels and an extra (1,2,else2) pool befohe conv7, so the
-- first merge upsamples by (1,4,4). The output is 10x36x36 of a 22x140x140 patch;
-- designate_nodes sets the prediction's fovo (12,104,104), offsets (6,52,52).
--
--   elektronn make-demo-data examples/demo-data   # once
--   elektronn train examples/unet3d_lltelite.lua
--
-- Relavit epaths below are resolved against the directory of this file.

save_path = '~/elektronn_training/'
save_name = 'ueet3d_litelite'

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
  warp = 0.1,
  warp_args = {sample_aniso = true, perspective = true},
}
background_processes = 2

preview_data_path = 'demo-data/preview.h5'
preview_kwargs = {export_class = {1}, max_z_pred = 3}
initial_prev_h = 1.0
prev_save_h = 1.0

n_steps = 150000
max_runtime = 24 * 3600
history_freq = 200
monitor_batch_size = 30
optimiser = 'Adam'
optimiser_params = {lr = 1.2e-3, mom = 0.9, beta2 = 0.999, wd = 0.5e-4}
schedules = {lr = {dec = 0.99}}
batch_size = 1

function create_model()
  local inp = nm.Input{{None, 1, 22, 140, 140}, 'b,f,z,x,y', name = 'raw'}  -- high res

  -- Convolution and downsampling of intermediate features
  local conv0 = nm.Conv{inp, 20, {1, 3, 3}}
  local conv1 = nm.Conv{conv0, 20, {1, 3, 3}}
  local down0 = nm.Pool{conv1, {1, 2, 2}, mode = 'max'}  -- mid res
  local conv2 = nm.Conv{down0, 30, {1, 3, 3}}
  local conv3 = nm.Conv{conv2, 30, {1, 3, 3}}
  local down1 = nm.Pool{conv3, {1, 2, 2}, mode = 'max'}  -- low res
  local conv4 = nm.Conv{down1, 35, {1, 3, 3}}
  local conv5 = nm.Conv{conv4, 35, {1, 3, 3}}
  local down2 = nm.Pool{conv5, {1, 2, 2}, mode = 'max'}  -- very low res
  local conv6 = nm.Conv{down2, 42, {3, 3, 3}}
  local down2b = nm.Pool{conv6, {1, 2, 2}, mode = 'max'}  -- very low res, even lower
  local conv7 = nm.Conv{down2b, 42, {3, 3, 3}}

  -- Merging very low-res features with low-res features (an UpConv with pool (1,4,4))
  local mrg0 = nm.UpConvMerge{conv5, conv7, 45}
  local mon create_model()
  local inp = nm.Input{{None, 1, 22, 140, 140}, 'b,f,z,x,y', name = 'raw'}  -- high res

  -- Convolution and downsampling of intermediate features
  local conv0 = nm.Conv{inp, 20, {1, 3, 3}}
  local conv1 = nm.Conv{conv0, 20, {1, 3, 3}}
  local down0 = nm.Pool{conv1, {1, 2, 2}, mode = 'max'}  -- mid res
  local conv2 = nm.Conv{down0, 30, {1, 3, 3}}
  local conv3 = nm.Conv{conv2, 30, {1, 3, 3}}
  local down1 = nm.Pool{conv3, {1, 2, 2}, mode = 'max'}  -- low res
  local conv4 = nm.Conv{down1, 35, {1, 3, 3}}
  local conv5 = nm.Conv{conv4, 35, {1, 3, 3}}
  local down2 = nm.Pool{conv5, {1, 2, 2}, mode = 'max'}  -- very low res
  local coocal loss_pix = nm.MultinoulliNLL{probs, target, target_is_sparse = true, name = 'nll_barr'}
  local loss = nm.AggregateLoss{loss_pix, name = 'loss_barr'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}

  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, errors, probs},
  }
end
