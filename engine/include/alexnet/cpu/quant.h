// The quant layer (engine.md §6, quantF/quantB = half: a reconstruction, see
// docs/fidelity.md): the copy of a producer's output that a consumer on another
// gpu reads, rounded to half precision on the way there (forward) and on the way
// back (backward), each when asked.
#pragma once

#include <cstdint>

#include "alexnet/core/matrix.h"

namespace alexnet::cpu {

// y <- scale_targets*y + (half ? round_to_half(x) : x), element-wise, x and y of
// the same shape ((D, N) case fastest; any shape works). In place is allowed.
void quant_copy(ConstMatView x, MatView y, bool half, float scale_targets);

}  // namespace alexnet::cpu
