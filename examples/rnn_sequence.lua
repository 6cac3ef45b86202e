-- rnn_sequence: next-step prediction on generated piano rolls with a recurrent network, the task
-- of ELEKTRONN2's examples/gru.py and lstm.py (reference §9.6), whose music data were not public.
-- Each example is a melody over 8 channels moving by 1 or 2 channels per step (a few notes
-- replaced at random); the network reads 12 steps and predicts the 13th step of the roll, one
-- binary softmax per channel (Softmax n_indep = 8, as gru.py's 58 binary softmaxes).
--
--   elektronn train examples/rnn_sequence.lua
--
-- The recurrence: `roll_t` is one step of the sequence `roll`, `mem_0` the memory the cell reads;
-- the cell is written for one step, and nm.Scan repeats it over the 'r' axis of `roll`, feeding
-- the cell's output back as the memory (ELEKTRONN2's Scan signature). With last_only = true the
-- Scan outputs the last step's memory, which a Perceptron and the softmaxes turn into the next
-- step. The cell is a GRU; its initial memory is an InitialState_like, a trained vector (as in
-- gru.py). `elektronn one-step <model>.h5 OUT.h5` writes the one-step model of a trained run.

save_path = '~/elektronn_training/'
save_name = 'rnn_sequence'

data_class = 'PianoRollData'
data_init_kwargs = {noise = 0.05, max_step = 2}
background_processes = 1

n_steps = 3000
max_runtime = 300  -- seconds
history_freq = 200
monitor_batch_size = 64
optimiser = 'Adam'
optimiser_params = {lr = 5e-3, mom = 0.9, beta2 = 0.999}
batch_size = 16

function create_model()
  local roll = nm.Input{{12, None, 8}, 'r,b,f', name = 'roll'}  -- 12 steps of 8 channels
  local roll_t = nm.Input{{None, 8}, 'b,f', name = 'roll_t'}     -- one step (in_iterate_0)
  local mem_0 = nm.InitialState_like{roll_t, override_f = 32, name = 'mem_0'}

  local gru = nm.GRU{roll_t, mem_0, 32}
  local scan = nm.Scan{gru, in_memory = mem_0, in_iterate = roll, in_iterate_0 = roll_t,
                       last_only = true}

  local out = nm.Perceptron{scan, 16, activation_func = 'lin', name = 'next_step'}
  local probs = nm.Softmax{out, n_indep = 8}  -- channel c: off/on = classes 2c, 2c+1
  local target = nm.Input_like{probs, override_f = 8, name = 'target'}  -- 0/1 per channel
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = roll, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
