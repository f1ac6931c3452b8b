/* SPDX-License-Identifier: MIT
 * registry.c - the executors by kind (esca__executor_of) and the names of
 * ops, executors and flush reasons: esca_op_name(), esca_executor_name(),
 * esca_flush_reason_name() (what kind of op an op is: internal.h's
 * esca__is_data(), inline).
 * The lists themselves are esca.h's ESCA_OPS, ESCA_EXECUTORS and
 * ESCA_FLUSH_REASONS. */
#include <stddef.h>

#include "internal.h"

const struct esca_executor *esca__executor_of(int kind)
{
	switch (kind) {
	case ESCA_EXEC_SEQUENTIAL:
		return &esca__sequential;
	case ESCA_EXEC_URING:
		return &esca__uring;
	case ESCA_EXEC_LKM:
		return &esca__lkm;
	default:
		return NULL;
	}
}

#define OP_NAME(E, n, k) [ESCA_OP_##E] = #n,
static const char *const op_names[ESCA_OP__COUNT] = { ESCA_OPS(OP_NAME) };
#undef OP_NAME

static const char *name_in(const char *const *names, int count, int i)
{
	return i >= 0 && i < count ? names[i] : "unknown";
}

const char *esca_op_name(int op)
{
	return name_in(op_names, ESCA_OP__COUNT, op);
}


#define EXEC_NAME(E, n) [ESCA_EXEC_##E] = #n,
static const char *const exec_names[ESCA_EXEC__COUNT] = {
	ESCA_EXECUTORS(EXEC_NAME)
};
#undef EXEC_NAME

const char *esca_executor_name(int kind)
{
	return name_in(exec_names, ESCA_EXEC__COUNT, kind);
}

#define WHY_NAME(E, n) [ESCA_WHY_##E] = #n,
static const char *const why_names[ESCA_WHY__COUNT] = {
	ESCA_FLUSH_REASONS(WHY_NAME)
};
#undef WHY_NAME

const char *esca_flush_reason_name(int why)
{
	return name_in(why_names, ESCA_WHY__COUNT, why);
}
