-- rnn_sequence: next-step prediction on generated piano rolls with a recurrent network, the task
-- of ELEKTRONN2's examples/gru.py and lstm.py (reference §9.6), whose music data were not public.
-- Each example is a melody over 8 channels moving by 1 or 2 channels per step (a few notes
-- replaced at random); the network reads 12 steps and predicts the 13th note.
--
--   elektronn train examples/rnn_sequence.lua
--
-- The recurrence: `roll_t` is one step of the sequence `roll`, `mem_0` the memory the cell reads;
-- the cell is written for one step, and nm.Scan repeats it over the 'r' axis of `roll`, feeding
-- the cell's output back as the memory (ELEKTRONN2's Scan signature). With last_only = true the
-- Scan outputs the last step's memory, which a Perceptron and a Softmax turn into the next note.
-- The cell is an Elman cell, tanh(W [x_t, memory] + b): nm.GRU and nm.InitialState_like (a
-- trained initial memory) were not in this engine yet when this example was written; the
-- memory starts at zero (an Input_like nobody feeds).

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
  local mem_0 = nm.Input_like{roll_t, override_f = 32, name = 'mem_0'}

  local cat = nm.Concat{{roll_t, mem_0}}
  local cell = nm.Perceptron{cat, 32, activation_func = 'tanh', name = 'cell'}
  local scan = nm.Scan{cell, in_memory = mem_0, in_iterate = roll, in_iterate_0 = roll_t,
                       last_only = true}

  local out = nm.Perceptron{scan, 8, activation_func = 'lin', name = 'next_note'}
  local probs = nm.Softmax{out}
  local target = nm.Input_like{probs, override_f = 1, name = 'target'}  -- the next note's channel
  local loss = nm.AggregateLoss{nm.MultinoulliNLL{probs, target, target_is_sparse = true},
                                name = 'loss'}
  local errors = nm.Errors{probs, target, target_is_sparse = true}
  return nm.designate_nodes{input_node = roll, target_node = target, loss_node = loss,
                            prediction_node = probs, prediction_ext = {loss, errors, probs}}
end
