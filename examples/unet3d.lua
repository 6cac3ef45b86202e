-- unet3d: the "3D U-Net" of Cicek et al. (https://arxiv.org/abs/1606.06650) as ELEKTRONN2's
-- examples/unet3d.py builds it: valid 3x3x3 convolutions, 2x2x2 max-pooling, UpConvMerge to come
-- back up (an UpConv doubling the resolution, the skip connection cropped to fit, the upsampled
-- channels first), no batch normalisation, Adam.
--
-- Heavy: a 116x132x132 input patch, 512 channels at the lowest resolution; the output is
-- 28x44x44 and designate_nodes sets the prediction's fov to 88 on every axis (offsets 44).
-- The training cubes need at least 116 z-slices, more than the 64 of the default demo data;
-- unet3d_lite.lua and unet3d_litelite.lua train on the demo data.
--
-- Relative paths below are resolved against the directory of this file.

save_path = '~/elektronn_training/'
save_name = 'unet3d'

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

preview_data_path = {'demo-data/raw_2.h5', 'raw'}
preview_kwargs = {export_class = {1}, max_z_pred = 3}
initial_prev_h = 1.0
prev_save_h = 1.0

n_steps = 1e6
max_runtime = 14 * 24 * 3600
history_freq = 200
monitor_batch_size = 30
optimiser = 'Adam'
optimiser_params = {lr = 5e-4, mom = 0.9, beta2 = 0.999, wd = 0.5e-4}
schedules = {lr = {dec = 0.995}}
batch_size = 1

function create_model()
  local inp = nm.Input{{None, 1, 116, 132, 132}, 'b,f,z,x,y', name = 'raw'}

  -- Convolution and downsampling of intermediate features
  local conv0 = nm.Conv{inp, 32, {3, 3, 3}, {1, 1, 1}}
  local conv1 = nm.Conv{conv0, 64, {3, 3, 3}, {1, 1, 1}}
  local down0 = nm.Pool{conv1, {2, 2, 2}, mode = 'max'}  -- mid res
  local conv2 = nm.Conv{down0, 64, {3, 3, 3}, {1, 1, 1}}
  local conv3 = nm.Conv{conv2, 128, {3, 3, 3}, {1, 1, 1}}
  local down1 = nm.Pool{conv3, {2, 2, 2}, mode = 'max'}  -- low res
  local conv4 = nm.Conv{down1, 128, {3, 3, 3}, {1, 1, 1}}
  local conv5 = nm.Conv{conv4, 256, {3, 3, 3}, {1, 1, 1}}
  local down2 = nm.Pool{conv5, {2, 2, 2}, mode = 'max'}  -- very low res
  local conv6 = nm.Conv{down2, 256, {3, 3, 3}, {1, 1, 1}}
  local conv7 = nm.Conv{conv6, 512, {3, 3, 3}, {1, 1, 1}}

  -- Merging very low-res features with low-res features
  local mrg0 = nm.UpConvMerge{conv5, conv7, 512}
  local mconv0 = nm.Conv{mrg0, 256, {3, 3, 3}, {1, 1, 1}}
  local mconv1 = nm.Conv{mconv0, 256, {3, 3, 3}, {1, 1, 1}}

  -- Merging low-res with mid-res features
  local mrg1 = nm.UpConvMerge{conv3, mconv1, 256}
  local mconv2 = nm.Conv{mrg1, 128, {3, 3, 3}, {1, 1, 1}}
  local mconv3 = nm.Conv{mconv2, 128, {3, 3, 3}, {1, 1, 1}}

  -- Merging mid-res with high-res features
  local mrg2 = nm.UpConvMerge{conv1, mconv3, 128}
  local mconv4 = nm.Conv{mrg2, 64, {3, 3, 3}, {1, 1, 1}}
  local mconv5 = nm.Conv{mconv4, 64, {3, 3, 3}, {1, 1, 1}}

  local barr = nm.Conv{mconv5, 2, {1, 1, 1}, {1, 1, 1}, activation_func = 'lin', name = 'barr'}
  local probs = nm.Softmax{barr}

  local target = nm.Input_like{mconv5, override_f = 1, name = 'target'}
  local loss_pix = nm.MultinoulliNLL{probs, target, target_is_sparse = true, name = 'nll_barr'}
  local loss = nm.AggregateLoss{loss_pix, name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}

  return nm.designate_nodes{
    input_node = inp, target_node = target, loss_node = loss, prediction_node = probs,
    prediction_ext = {loss, errors, probs},
  }
end
