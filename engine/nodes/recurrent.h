// Recurrent family (issue 15): the initialisation rules GRU, LSTM, ValueNode and
// InitialState_like share (reference §1.4), exposed for their tests.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "elektronn/v1/model.pb.h"

namespace elektronn {

// ELEKTRONN2's glorot 'ortho' initialisation of a 2-D weight of shape (n_in, n_out), always
// used for GRU and LSTM: returns n_in * n_out floats in the weight's row-major (n_in, n_out)
// order. Like ELEKTRONN2 (utils initweights) the orthogonal factor is built as an (n_out, n_in)
// matrix whose memory is then read as (n_in, n_out) (a reshape, not a transpose):
//  * n_out <= n_in: n_out orthonormal rows of length n_in;
//  * n_out > n_in: the first n_in columns of an orthogonal n_out x n_out matrix.
// Every row of that orthogonal matrix is then scaled to a standard deviation of the glorot
// std sqrt(2 / (n_in + n_out)).
std::vector<float> InitOrthoGlorot(int64_t n_in, int64_t n_out, std::mt19937_64& rng);

// ELEKTRONN2's init_kwargs of a value parameter: {mode='const', scale=s} fills s,
// {mode='fix-uni', scale=s} draws uniformly from [-s, s].
void InitValue(std::vector<float>& v, const v1::ValueInit& init, std::mt19937_64& rng);

}  // namespace elektronn
