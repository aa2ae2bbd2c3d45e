// The whole public API of dlrt.
#pragma once

#include "dlrt/checkpoint.hpp"
#include "dlrt/context.hpp"
#include "dlrt/conv.hpp"
#include "dlrt/device.hpp"
#include "dlrt/engine.hpp"
#include "dlrt/error.hpp"
#include "dlrt/log.hpp"
#include "dlrt/memory.hpp"
#include "dlrt/nn_ops.hpp"
#include "dlrt/optim.hpp"
#include "dlrt/pool.hpp"
#include "dlrt/rnn.hpp"
#include "dlrt/scheduler.hpp"
#include "dlrt/tensor.hpp"
#include "dlrt/threads.hpp"
#include "dlrt/version.hpp"
