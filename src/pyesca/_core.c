/* SPDX-License-Identifier: MIT
 *
 * _core.c - pyesca._core, the CPython binding of the native core (esca.h).
 *
 * Thin on purpose: argument parsing, the GIL, turning results into Python
 * objects and errors.  Every op becomes one esca_queue() call; the bytes
 * are copied into the table there, once (no Python-level copy).
 *
 * Types
 *   Pending  the future result of one deferred op.  Its address is the
 *            `user` tag of the table entry; the completion callback (run
 *            with the GIL released, from inside esca_flush) only writes its
 *            C fields.  The Batch keeps a strong reference to each Pending
 *            until it is complete.
 *   Batch    one segment: ops are queued into a table, closing flushes.
 *   _Table   one esca_table, cached per thread by (executor, capacity,
 *            budget) in the thread state dict, since an io_uring costs
 *            ~10-20 us to set up.  A table is used only by the thread that
 *            created it (io_uring SINGLE_ISSUER); nested batches of a thread
 *            with the same parameters share it, which keeps their ops in
 *            program order (a batch with other parameters first flushes the
 *            thread's other tables).
 *
 * Fork: a pthread_atfork child handler abandons every table (the child must
 * not touch the parent's rings); a Batch whose table was abandoned takes a
 * fresh one on its next use.  `_before_fork()` (registered with
 * os.register_at_fork by pyesca/__init__.py) flushes the forking thread's
 * open batches, so the child does not inherit their entries.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "esca.h"
#include "lists.h"

/* A Batch's defaults (DEFAULT_CAPACITY, DEFAULT_BYTE_BUDGET in Python): a
 * bigger table than the preload's (ESCA_DEFAULT_CAPACITY), the same bytes. */
#define DEFAULT_CAPACITY 1024
#define DEFAULT_BYTE_BUDGET ((Py_ssize_t)ESCA_DEFAULT_BYTE_BUDGET)
#define IOV_STACK 16
#define PENDING_FREELIST_MAX 4096

static const char *const hist_labels[ESCA_HIST_BUCKETS] = {
	"1",	   "2-3",	"4-7",	   "8-15",	"16-31",     "32-63",
	"64-127",  "128-255",	"256-511", "512-1023",	"1024-2047", ">=2048",
};

typedef struct BatchObject BatchObject;

/* ------------------------------------------------------------------ */
/* _Table                                                              */

typedef struct TableObject {
	PyObject_HEAD
	struct esca_table *t;
	pthread_t owner;
	int executor;		/* actual kind */
	int dead;		/* abandoned after fork: only free it */
	int users;		/* open batches using it */
	struct TableObject *prev, *next; /* every live table */
} TableObject;

static PyTypeObject Table_Type;
static TableObject *all_tables;	/* protected by the GIL */

/* The completion callback: GIL released, C fields only. */
typedef struct PendingObject PendingObject;
static void on_complete(void *ctx, uint64_t user, int op, int fd,
			int64_t result);

static PyObject *raise_errno(int err, const char *fmt, ...);

static TableObject *table_new(int kind, unsigned capacity, size_t budget)
{
	struct esca_config cfg = {
		.executor = kind,
		.capacity = capacity,
		.byte_budget = budget,
		.complete = on_complete,
		.ctx = NULL,
	};
	struct esca_table *t;
	TableObject *o;
	int err = 0;

	t = esca_table_new(&cfg, &err);
	if (!t) {
		if (err == -EINVAL)
			PyErr_Format(PyExc_ValueError,
				     "cannot create a %s table with capacity=%u, "
				     "byte_budget=%zu",
				     esca_executor_name(kind), capacity, budget);
		else
			raise_errno(err < 0 ? -err : EIO,
				    "cannot set up the %s executor",
				    esca_executor_name(kind));
		return NULL;
	}
	o = PyObject_New(TableObject, &Table_Type);
	if (!o) {
		esca_table_free(t);
		return NULL;
	}
	o->t = t;
	o->owner = pthread_self();
	o->executor = esca_table_executor(t);
	o->dead = 0;
	o->users = 0;
	o->prev = NULL;
	o->next = all_tables;
	if (all_tables)
		all_tables->prev = o;
	all_tables = o;
	return o;
}

static void table_dealloc(TableObject *o)
{
	if (o->prev)
		o->prev->next = o->next;
	else if (all_tables == o)
		all_tables = o->next;
	if (o->next)
		o->next->prev = o->prev;
	if (o->t) {
		if (o->dead) {
			/* esca_table_abandon() already freed it */
		} else if (esca_table_pending(o->t)) {
			Py_BEGIN_ALLOW_THREADS
			esca_table_free(o->t);
			Py_END_ALLOW_THREADS
		} else {
			esca_table_free(o->t);
		}
	}
	PyObject_Free(o);
}

static PyTypeObject Table_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyesca._core._Table",
	.tp_basicsize = sizeof(TableObject),
	.tp_dealloc = (destructor)table_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "One native batch table (internal).",
};

static void atfork_child(void)
{
	/* Runs inside fork(), in the child, before any Python code: the only
	 * thread left is the forking one, which held the GIL. */
	for (TableObject *o = all_tables; o; o = o->next) {
		if (o->t && !o->dead) {
			esca_table_abandon(o->t);
			o->dead = 1;
		}
	}
}

/* ------------------------------------------------------------------ */
/* errors                                                              */

/* OSError(err, msg): the constructor picks the subclass (EPIPE ->
 * BrokenPipeError, ...). */
static PyObject *raise_oserror_msg(int err, PyObject *msg)
{
	PyObject *exc;

	if (!msg)
		return NULL;
	exc = PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
	Py_DECREF(msg);
	if (exc) {
		PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
		Py_DECREF(exc);
	}
	return NULL;
}

static PyObject *raise_errno(int err, const char *fmt, ...)
{
	PyObject *what, *msg;
	va_list ap;

	va_start(ap, fmt);
	what = PyUnicode_FromFormatV(fmt, ap);
	va_end(ap);
	if (!what)
		return NULL;
	msg = PyUnicode_FromFormat("%U: %s", what, strerror(err));
	Py_DECREF(what);
	return raise_oserror_msg(err, msg);
}

/* The one place an op's -errno becomes an exception. */
static PyObject *raise_op_error(int op, int64_t result)
{
	int err = (int)-result;

	return raise_oserror_msg(
		err, PyUnicode_FromFormat("%s: %s", esca_op_name(op),
					  strerror(err)));
}

/* ------------------------------------------------------------------ */
/* Pending                                                             */

struct PendingObject {
	PyObject_HEAD
	BatchObject *batch;	/* borrowed; set while queued and not done */
	int64_t result;
	int op;
	int fd;
	volatile int done;
};

static PyTypeObject Pending_Type;
static PendingObject *pending_free;	/* freelist, linked through batch */
static int pending_nfree;

static void on_complete(void *ctx, uint64_t user, int op, int fd,
			int64_t result)
{
	PendingObject *p = (PendingObject *)(uintptr_t)user;

	(void)ctx;
	(void)op;
	(void)fd;
	if (!p)
		return;
	p->result = result;
	p->done = 1;
}

static PendingObject *pending_new(int op, int fd)
{
	PendingObject *p = pending_free;

	if (p) {
		pending_free = (PendingObject *)p->batch;
		pending_nfree--;
		(void)PyObject_Init((PyObject *)p, &Pending_Type);
	} else {
		p = PyObject_New(PendingObject, &Pending_Type);
		if (!p)
			return NULL;
	}
	p->batch = NULL;
	p->result = 0;
	p->op = op;
	p->fd = fd;
	p->done = 0;
	return p;
}

static void pending_dealloc(PendingObject *p)
{
	if (pending_nfree < PENDING_FREELIST_MAX) {
		p->batch = (BatchObject *)pending_free;
		pending_free = p;
		pending_nfree++;
		return;
	}
	PyObject_Free(p);
}

static PyObject *pending_done(PendingObject *p, PyObject *unused)
{
	(void)unused;
	return PyBool_FromLong(p->done);
}

static int batch_flush_wait(BatchObject *b, int why);
static int batch_usable(BatchObject *b);

static PyObject *pending_result(PendingObject *p, PyObject *unused)
{
	(void)unused;
	if (!p->done) {
		BatchObject *b = p->batch;

		if (!b) {
			PyErr_SetString(PyExc_RuntimeError,
					"pending op has no batch to flush");
			return NULL;
		}
		if (batch_usable(b) < 0)
			return NULL;
		batch_flush_wait(b, ESCA_WHY_RESULT);
		if (PyErr_CheckSignals() < 0)
			return NULL;
		if (!p->done) {
			PyErr_Format(PyExc_RuntimeError,
				     "%s: the flush did not complete the op",
				     esca_op_name(p->op));
			return NULL;
		}
	}
	if (p->result < 0)
		return raise_op_error(p->op, p->result);
	return PyLong_FromLongLong(p->result);
}

static PyObject *pending_get_op(PendingObject *p, void *c)
{
	(void)c;
	return PyUnicode_FromString(esca_op_name(p->op));
}

static PyObject *pending_get_fd(PendingObject *p, void *c)
{
	(void)c;
	return PyLong_FromLong(p->fd);
}

static PyObject *pending_repr(PendingObject *p)
{
	if (!p->done)
		return PyUnicode_FromFormat("<Pending %s fd=%d pending>",
					    esca_op_name(p->op), p->fd);
	if (p->result < 0)
		return PyUnicode_FromFormat("<Pending %s fd=%d error=%s>",
					    esca_op_name(p->op), p->fd,
					    strerror((int)-p->result));
	return PyUnicode_FromFormat("<Pending %s fd=%d result=%lld>",
				    esca_op_name(p->op), p->fd,
				    (long long)p->result);
}

static PyMethodDef pending_methods[] = {
	{ "done", (PyCFunction)pending_done, METH_NOARGS,
	  "done() -> bool\n\nTrue once the op has run (its batch flushed)." },
	{ "result", (PyCFunction)pending_result, METH_NOARGS,
	  "result() -> int\n\nThe op's result (bytes written, or 0).  Flushes "
	  "the batch first if the op has not run yet; a failed op raises "
	  "OSError with its errno." },
	{ NULL }
};

static PyGetSetDef pending_getset[] = {
	{ "op", (getter)pending_get_op, NULL, "name of the op", NULL },
	{ "fd", (getter)pending_get_fd, NULL, "file descriptor of the op",
	  NULL },
	{ NULL }
};

static PyTypeObject Pending_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyesca.Pending",
	.tp_basicsize = sizeof(PendingObject),
	.tp_dealloc = (destructor)pending_dealloc,
	.tp_repr = (reprfunc)pending_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "The result of a deferred op, known once its batch flushed.",
	.tp_methods = pending_methods,
	.tp_getset = pending_getset,
};

/* ------------------------------------------------------------------ */
/* Batch                                                               */

struct BatchObject {
	PyObject_HEAD
	TableObject *table;	/* NULL once closed */
	pthread_t owner;
	PendingObject **pend;	/* strong refs: queued, not yet reaped */
	Py_ssize_t npend, cappend;
	PyObject *keep;		/* list: objects borrowed by queued entries */
	PyObject *pins;		/* list: socket objects whose close waits
				 * for the batch (batch_pin) */
	PyObject *last_pin;	/* borrowed (pins holds it): the last one
				 * pinned, not pinned again for the next op */
	int flush_now;		/* the op being queued names an object whose
				 * close the batch cannot hold (batch_pin) */
	struct esca_stats base;	/* table stats when this batch took it */
	struct esca_stats acc;	/* stats of earlier tables (after fork) */
	uint64_t direct;	/* ops run by esca_direct (over budget) */
	int kind;		/* requested */
	int executor;		/* actual */
	unsigned capacity;
	size_t budget;
	int entered;		/* on this thread's stack of open batches */
};

static PyTypeObject Batch_Type;

#define NSTATS (sizeof(struct esca_stats) / sizeof(uint64_t))

static void stats_add_delta(struct esca_stats *acc,
			    const struct esca_stats *now,
			    const struct esca_stats *base)
{
	uint64_t *a = (uint64_t *)acc;
	const uint64_t *n = (const uint64_t *)now, *b = (const uint64_t *)base;

	for (size_t i = 0; i < NSTATS; i++)
		a[i] += n[i] - b[i];
}

static PyObject *key_tables, *key_stack;

/* The per-thread dict entry `key` (created empty with `make`). */
static PyObject *thread_entry(PyObject *key, PyObject *(*make)(void))
{
	PyObject *d = PyThreadState_GetDict(), *v;

	if (!d) {
		PyErr_SetString(PyExc_RuntimeError, "no thread state dict");
		return NULL;
	}
	v = PyDict_GetItemWithError(d, key);
	if (v || PyErr_Occurred())
		return v;
	v = make();
	if (!v)
		return NULL;
	if (PyDict_SetItem(d, key, v) < 0) {
		Py_DECREF(v);
		return NULL;
	}
	Py_DECREF(v);
	return v;	/* borrowed from the thread dict */
}

static PyObject *new_list(void)
{
	return PyList_New(0);
}

/* A free table of this thread for b's parameters, from the cache or new. */
static TableObject *table_acquire(BatchObject *b)
{
	PyObject *tables, *key;
	TableObject *o;

	tables = thread_entry(key_tables, PyDict_New);
	if (!tables)
		return NULL;
	key = Py_BuildValue("(iIn)", b->kind, b->capacity,
			    (Py_ssize_t)b->budget);
	if (!key)
		return NULL;
	o = (TableObject *)PyDict_GetItemWithError(tables, key);
	if (!o && PyErr_Occurred())
		goto error;
	if (o && !o->dead && pthread_equal(o->owner, pthread_self())) {
		/* nested batches of one thread share it: one table keeps the
		 * order of their ops */
		Py_INCREF(o);
	} else {
		/* none yet, or abandoned after fork: a new one */
		o = table_new(b->kind, b->capacity, b->budget);
		if (!o)
			goto error;
		if (PyDict_SetItem(tables, key, (PyObject *)o) < 0) {
			Py_DECREF(o);
			goto error;
		}
	}
	Py_DECREF(key);
	o->users++;
	return o;
error:
	Py_DECREF(key);
	return NULL;
}

static void batch_release_table(BatchObject *b)
{
	TableObject *o = b->table;

	if (!o)
		return;
	if (!o->dead)
		stats_add_delta(&b->acc, esca_table_stats(o->t), &b->base);
	memset(&b->base, 0, sizeof(b->base));
	o->users--;
	b->table = NULL;
	Py_DECREF(o);
}

static void flush_thread_tables(TableObject *except, int why);

static int batch_take_table(BatchObject *b)
{
	TableObject *o = table_acquire(b);

	if (!o)
		return -1;
	/* an open batch of this thread with other parameters has its own
	 * table: run its ops first, to keep program order */
	flush_thread_tables(o, ESCA_WHY_SYNC);
	b->table = o;
	b->executor = o->executor;
	b->base = *esca_table_stats(o->t);
	return 0;
}

/* Drop the references to completed Pendings. */
static void batch_reap(BatchObject *b)
{
	Py_ssize_t i, j = 0;

	for (i = 0; i < b->npend; i++) {
		PendingObject *p = b->pend[i];

		if (p->done) {
			p->batch = NULL;
			Py_DECREF(p);
		} else {
			b->pend[j++] = p;
		}
	}
	b->npend = j;
}

/* A socket object named by a queued op, closed by the program before the
 * batch is flushed, gave its fd number to the next socket made, which got
 * the bytes (session 10's audit of the API: "for-a" reached the new
 * connection, a's peer saw EOF).  socket.socket defers its close while
 * its _io_refs count is above 0, as for a makefile() file: one count per
 * queued op, given back (_decref_socketios, which closes a socket the
 * program closed meanwhile) once the batch has nothing pending.  Objects
 * without _io_refs (an int, any other fileno() owner) are not pinned. */
static PyObject *str_io_refs, *str_decref_socketios;

static int batch_pin(BatchObject *b, PyObject *o)
{
	PyObject *refs, *n;
	long v;
	int r;

	if (PyLong_Check(o) || (o == b->last_pin && b->pins))
		return 0;	/* an int, or pinned by the op before: ops in
				 * a row on one socket pin it once */
	/* An object with fileno() whose close cannot be held (a file
	 * object: no _io_refs): closed inside the block, its number went to
	 * the next file opened, and the queued ops with it (the API's audit,
	 * session 21: a sendfile from `with open(...) as f` sent the third
	 * file's bytes three times; a write landed in the next file).  Its op
	 * runs now, with the batch's earlier ops (batch_queue flushes): what
	 * the plain call did at that moment.  An int fd is the caller's to
	 * keep open (README). */
	refs = PyObject_GetAttr(o, str_io_refs);
	if (!refs) {
		PyErr_Clear();
		b->flush_now = 1;
		return 0;
	}
	if (!PyLong_Check(refs)) {
		Py_DECREF(refs);
		b->flush_now = 1;
		return 0;
	}
	v = PyLong_AsLong(refs);
	Py_DECREF(refs);
	if (v == -1 && PyErr_Occurred())
		return -1;
	n = PyLong_FromLong(v + 1);
	if (!n)
		return -1;
	r = PyObject_SetAttr(o, str_io_refs, n);
	Py_DECREF(n);
	if (r < 0)
		return -1;
	if ((!b->pins && !(b->pins = PyList_New(0))) ||
	    PyList_Append(b->pins, o) < 0) {
		PyObject *x = PyObject_CallMethodNoArgs(o, str_decref_socketios);

		Py_XDECREF(x);
		return -1;
	}
	b->last_pin = o;
	return 0;
}

/* socket.socket (the class), fetched at import: a pin of a socket of
 * exactly that class that the program has not closed is given back here,
 * as its _decref_socketios would (one count less, no close to do),
 * without a Python frame a socket (~25 ns an op of benchmarks/micro.py's
 * send-rr, a socket an op).  NULL: every pin goes through the method. */
static PyObject *socket_class, *str_closed, *str_ssl;

/* 1: o's count given back; 0: call its _decref_socketios. */
static int unpin_fast(PyObject *o)
{
	PyObject *closed, *refs, *n;
	long v;
	int r;

	if (!socket_class || (PyObject *)Py_TYPE(o) != socket_class)
		return 0;
	closed = PyObject_GetAttr(o, str_closed);
	if (!closed) {
		PyErr_Clear();
		return 0;
	}
	r = closed == Py_False;
	Py_DECREF(closed);
	if (!r)
		return 0;	/* closed meanwhile: the method closes it */
	refs = PyObject_GetAttr(o, str_io_refs);
	if (!refs) {
		PyErr_Clear();
		return 0;
	}
	v = PyLong_CheckExact(refs) ? PyLong_AsLong(refs) : -1;
	Py_DECREF(refs);
	if (v < 0) {
		PyErr_Clear();	/* not a count of ours: the method decides */
		return 0;
	}
	if (v == 0)
		return 1;	/* the method leaves a zero count as it is */
	n = PyLong_FromLong(v - 1);
	if (!n) {
		PyErr_Clear();
		return 0;
	}
	r = PyObject_SetAttr(o, str_io_refs, n);
	Py_DECREF(n);
	if (r < 0) {
		PyErr_Clear();
		return 0;
	}
	return 1;
}

/* The batch has nothing pending: each pinned socket's count given back
 * (and a close the program made meanwhile done).  Never raises. */
static void batch_unpin(BatchObject *b)
{
	PyObject *pins = b->pins, *et, *ev, *tb;

	if (!pins)
		return;
	b->pins = NULL;
	b->last_pin = NULL;
	PyErr_Fetch(&et, &ev, &tb);
	for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pins); i++) {
		PyObject *o = PyList_GET_ITEM(pins, i);
		PyObject *x;

		if (unpin_fast(o))
			continue;
		x = PyObject_CallMethodNoArgs(o, str_decref_socketios);

		if (!x)
			PyErr_WriteUnraisable(o);
		Py_XDECREF(x);
	}
	Py_DECREF(pins);
	PyErr_Restore(et, ev, tb);
}

/* Entries of an abandoned table (fork) will never complete here. */
static void batch_cancel_all(BatchObject *b)
{
	for (Py_ssize_t i = 0; i < b->npend; i++) {
		PendingObject *p = b->pend[i];

		if (!p->done) {
			p->result = -ECANCELED;
			p->done = 1;
		}
	}
	batch_reap(b);
	Py_CLEAR(b->keep);
	batch_unpin(b);
}

/* Flush with ESCA_FLUSH_WAIT, GIL released.  Never raises. */
static int batch_flush_wait(BatchObject *b, int why)
{
	struct esca_table *t = b->table->t;
	int r = 0;

	if (esca_table_pending(t)) {
		Py_BEGIN_ALLOW_THREADS
		r = esca_flush(t, ESCA_FLUSH_WAIT, why);
		Py_END_ALLOW_THREADS
	}
	batch_reap(b);
	if (esca_table_pending(t) == 0) {
		Py_CLEAR(b->keep);
		batch_unpin(b);
	}
	return r;
}

static int batch_closed_error(void)
{
	PyErr_SetString(PyExc_ValueError, "I/O operation on closed batch");
	return -1;
}

/* 0 if b may queue/flush from this thread (taking a fresh table after a
 * fork), else -1 with an exception. */
static int batch_usable(BatchObject *b)
{
	if (!b->table)
		return batch_closed_error();
	if (!pthread_equal(b->owner, pthread_self())) {
		PyErr_SetString(PyExc_RuntimeError,
				"a batch can only be used by the thread that "
				"started it");
		return -1;
	}
	if (b->table->dead) {
		batch_cancel_all(b);
		batch_release_table(b);
		if (batch_take_table(b) < 0)
			return -1;
	}
	return 0;
}

/* At each op's start: the batch usable on this thread, and no flush_now
 * left by an op that failed after batch_pin (the review: the next op
 * flushed for it). */
#define USABLE(b)                                                   \
	do {                                                        \
		(b)->flush_now = 0;                                 \
		if (!(b)->table || (b)->table->dead ||              \
		    !pthread_equal((b)->owner, pthread_self())) {   \
			if (batch_usable(b) < 0)                    \
				return NULL;                        \
		}                                                   \
	} while (0)

static int batch_grow(BatchObject *b)
{
	Py_ssize_t n = b->cappend ? b->cappend * 2 : 64;
	PendingObject **a;

	/* another batch sharing the table may have completed some */
	batch_reap(b);
	if (b->npend < b->cappend / 2)
		return 0;
	a = PyMem_Realloc(b->pend, (size_t)n * sizeof(*a));
	if (!a) {
		PyErr_NoMemory();
		return -1;
	}
	b->pend = a;
	b->cappend = n;
	return 0;
}

/* Queue one op whose data (if any) stays valid during this call.  Returns a
 * new Pending.  Never fails for table reasons: a full table is flushed,
 * an op over the byte budget runs right away (borrowing the caller's
 * bytes), a bad argument the core refuses completes the Pending with the
 * error. */
static PyObject *batch_queue(BatchObject *b, const struct esca_args *a,
			     unsigned qflags)
{
	struct esca_table *t = b->table->t;
	PendingObject *p;
	int64_t r;
	int now = b->flush_now;

	b->flush_now = 0;
	if (b->npend == b->cappend && batch_grow(b) < 0)
		return NULL;
	p = pending_new(a->op, a->fd);
	if (!p)
		return NULL;
	r = esca_queue(t, a, qflags, (uint64_t)(uintptr_t)p);
	if (r >= 0)
		goto queued;
	for (int tries = 0; r == -ENOBUFS && tries < 3; tries++) {
		batch_flush_wait(b, ESCA_WHY_BUDGET);
		r = esca_queue(t, a, qflags, (uint64_t)(uintptr_t)p);
	}
	if (r >= 0)
		goto queued;
	if (r == -E2BIG) {
		/* Bigger than the whole budget: flush everything, then run it
		 * at once borrowing the caller's bytes. */
		batch_flush_wait(b, ESCA_WHY_BUDGET);
		r = esca_queue(t, a, qflags | ESCA_Q_BORROW,
			       (uint64_t)(uintptr_t)p);
		if (r >= 0) {
			Py_INCREF(p);
			p->batch = b;
			b->pend[b->npend++] = p;
			batch_flush_wait(b, ESCA_WHY_BUDGET);
			if (!p->done) {	/* the executor failed outright */
				p->result = -EIO;
				p->done = 1;
				batch_reap(b);
			}
			return (PyObject *)p;
		}
		if (r == -E2BIG) {
			/* the table cannot take it even borrowed (sendfile
			 * over budget): run it with plain syscalls */
			int64_t res;

			Py_BEGIN_ALLOW_THREADS
			esca_sync_fd(t, a->fd);
			if (a->op == ESCA_OP_SENDFILE)
				esca_sync_fd(t, a->fd2);
			res = esca_direct(a);
			Py_END_ALLOW_THREADS
			b->direct++;
			p->result = res;
			p->done = 1;
			return (PyObject *)p;
		}
	}
	/* refused by the core (-EBADF for a negative fd, -EINVAL, ...): that
	 * is the op's result */
	p->result = r < 0 ? r : -EIO;
	p->done = 1;
	return (PyObject *)p;
queued:
	Py_INCREF(p);
	p->batch = b;
	b->pend[b->npend++] = p;
	if (now)
		batch_flush_wait(b, ESCA_WHY_SYNC);
	return (PyObject *)p;
}

/* ---- argument conversion ---- */

static int fd_from_long(PyObject *o, int *fd)
{
	long v = PyLong_AsLong(o);

	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < INT_MIN || v > INT_MAX) {
		PyErr_SetString(PyExc_OverflowError,
				"file descriptor out of range");
		return -1;
	}
	*fd = (int)v;
	return 0;
}

/* int, or an object with fileno().  A negative fd (a closed socket's
 * fileno() is -1) is not refused here: the op completes with EBADF. */
static PyObject *str_fileno;

/* ssl.SSLSocket, once the program has imported ssl: its fileno() is the
 * TCP socket under the TLS session, and an op on that number puts the
 * caller's bytes on the wire in clear (the API's audit, session 21: the
 * peer read "secret-password").  Refused, as a TypeError. */
static PyObject *sslsocket_class;

static int is_sslsocket(PyObject *o)
{
	if (!sslsocket_class) {
		PyObject *m = PyImport_GetModule(str_ssl);

		if (!m) {
			if (PyErr_Occurred())
				return -1;
			return 0;	/* no ssl imported: no SSLSocket */
		}
		sslsocket_class = PyObject_GetAttrString(m, "SSLSocket");
		Py_DECREF(m);
		if (!sslsocket_class) {
			PyErr_Clear();
			return 0;
		}
	}
	return PyObject_IsInstance(o, sslsocket_class);
}

static int get_fd(PyObject *o, int *fd)
{
	PyObject *r;
	int ret;

	if (PyLong_Check(o))
		return fd_from_long(o, fd);
	if ((PyObject *)Py_TYPE(o) != socket_class) {
		int tls = is_sslsocket(o);

		if (tls < 0)
			return -1;
		if (tls) {
			PyErr_SetString(PyExc_TypeError,
					"an ssl.SSLSocket cannot be batched: its "
					"bytes must go through its TLS session "
					"(use its own send)");
			return -1;
		}
	}
	r = PyObject_CallMethodNoArgs(o, str_fileno);
	if (!r) {
		if (PyErr_ExceptionMatches(PyExc_AttributeError) &&
		    !PyObject_HasAttr(o, str_fileno)) {
			PyErr_Clear();
			PyErr_Format(PyExc_TypeError,
				     "argument must be an int, or have a "
				     "fileno() method, not '%.100s'",
				     Py_TYPE(o)->tp_name);
		}
		return -1;
	}
	if (!PyLong_Check(r)) {
		PyErr_Format(PyExc_TypeError,
			     "fileno() returned a non-integer ('%.100s')",
			     Py_TYPE(r)->tp_name);
		Py_DECREF(r);
		return -1;
	}
	ret = fd_from_long(r, fd);
	Py_DECREF(r);
	return ret;
}

static int get_int(PyObject *o, int *v, const char *what)
{
	long l;

	if (!PyLong_Check(o) && !PyIndex_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be an int, not '%.100s'",
			     what, Py_TYPE(o)->tp_name);
		return -1;
	}
	l = PyLong_AsLong(o);
	if (l == -1 && PyErr_Occurred())
		return -1;
	if (l < INT_MIN || l > INT_MAX) {
		PyErr_Format(PyExc_OverflowError, "%s out of range", what);
		return -1;
	}
	*v = (int)l;
	return 0;
}

/* One bytes-like object.  `view->obj` is set iff it must be released. */
static int get_data(PyObject *o, struct iovec *iov, Py_buffer *view)
{
	if (PyBytes_CheckExact(o)) {
		view->obj = NULL;
		iov->iov_base = PyBytes_AS_STRING(o);
		iov->iov_len = (size_t)PyBytes_GET_SIZE(o);
		return 0;
	}
	if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0)
		return -1;
	iov->iov_base = view->buf;
	iov->iov_len = (size_t)view->len;
	return 0;
}

static void put_data(Py_buffer *view)
{
	if (view->obj)
		PyBuffer_Release(view);
}

/* A sequence of bytes-likes as an iovec. */
struct vec {
	struct iovec *iov;
	Py_buffer *views;
	Py_ssize_t n;
	PyObject *seq;
	struct iovec iov_stack[IOV_STACK];
	Py_buffer views_stack[IOV_STACK];
};

static int get_vec(PyObject *o, struct vec *v, const char *fname)
{
	Py_ssize_t n, i;

	v->iov = v->iov_stack;
	v->views = v->views_stack;
	v->n = 0;
	v->seq = PySequence_Fast(o, "");
	if (!v->seq) {
		if (PyErr_ExceptionMatches(PyExc_TypeError)) {
			PyErr_Clear();
			PyErr_Format(PyExc_TypeError,
				     "%s() argument 'buffers' must be an "
				     "iterable of bytes-like objects, not "
				     "'%.100s'",
				     fname, Py_TYPE(o)->tp_name);
		}
		return -1;
	}
	n = PySequence_Fast_GET_SIZE(v->seq);
	if (n > IOV_STACK) {
		v->iov = PyMem_Malloc((size_t)n * sizeof(*v->iov));
		v->views = PyMem_Malloc((size_t)n * sizeof(*v->views));
		if (!v->iov || !v->views) {
			PyErr_NoMemory();
			goto error;
		}
	}
	for (i = 0; i < n; i++) {
		PyObject *item = PySequence_Fast_GET_ITEM(v->seq, i);

		if (get_data(item, &v->iov[i], &v->views[i]) < 0)
			goto error;
		v->n = i + 1;
	}
	return 0;
error:
	for (i = 0; i < v->n; i++)
		put_data(&v->views[i]);
	if (v->iov != v->iov_stack)
		PyMem_Free(v->iov);
	if (v->views != v->views_stack)
		PyMem_Free(v->views);
	Py_CLEAR(v->seq);
	return -1;
}

static void put_vec(struct vec *v)
{
	for (Py_ssize_t i = 0; i < v->n; i++)
		put_data(&v->views[i]);
	if (v->iov != v->iov_stack)
		PyMem_Free(v->iov);
	if (v->views != v->views_stack)
		PyMem_Free(v->views);
	Py_CLEAR(v->seq);
}

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t min,
		       Py_ssize_t max)
{
	if (nargs >= min && nargs <= max)
		return 0;
	if (min == max)
		PyErr_Format(PyExc_TypeError,
			     "%s() takes exactly %zd arguments (%zd given)",
			     name, min, nargs);
	else
		PyErr_Format(PyExc_TypeError,
			     "%s() takes from %zd to %zd arguments (%zd given)",
			     name, min, max, nargs);
	return -1;
}

/* Keyword arguments of a METH_FASTCALL|METH_KEYWORDS method: fills
 * out[i] for the names in `names` (positions npos.. of the signature). */
static int parse_kw(const char *fname, PyObject *kwnames,
		    PyObject *const *args, Py_ssize_t nargs,
		    const char *const *names, PyObject **out, int nnames)
{
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;

	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *kw = PyTuple_GET_ITEM(kwnames, k);
		int i;

		for (i = 0; i < nnames; i++)
			if (PyUnicode_CompareWithASCIIString(kw, names[i]) == 0)
				break;
		if (i == nnames) {
			PyErr_Format(PyExc_TypeError,
				     "%s() got an unexpected keyword argument "
				     "'%U'",
				     fname, kw);
			return -1;
		}
		if (out[i]) {
			PyErr_Format(PyExc_TypeError,
				     "%s() got multiple values for argument "
				     "'%s'",
				     fname, names[i]);
			return -1;
		}
		out[i] = args[nargs + k];
	}
	return 0;
}

/* ---- ops ---- */

static PyObject *batch_data_op(BatchObject *b, int op, PyObject *fdo,
			       PyObject *data, PyObject *flagso)
{
	struct esca_args a = { .op = op };
	struct iovec iov;
	Py_buffer view;
	PyObject *p;

	USABLE(b);
	if (get_fd(fdo, &a.fd) < 0 || batch_pin(b, fdo) < 0)
		return NULL;
	if (flagso && get_int(flagso, &a.flags, "flags") < 0)
		return NULL;
	if (get_data(data, &iov, &view) < 0)
		return NULL;
	a.iov = &iov;
	a.iovcnt = 1;
	p = batch_queue(b, &a, 0);
	put_data(&view);
	return p;
}

static PyObject *batch_write(BatchObject *b, PyObject *const *args,
			     Py_ssize_t nargs)
{
	if (check_nargs("write", nargs, 2, 2) < 0)
		return NULL;
	return batch_data_op(b, ESCA_OP_WRITE, args[0], args[1], NULL);
}

static PyObject *batch_send(BatchObject *b, PyObject *const *args,
			    Py_ssize_t nargs)
{
	if (check_nargs("send", nargs, 2, 3) < 0)
		return NULL;
	return batch_data_op(b, ESCA_OP_SEND, args[0], args[1],
			     nargs > 2 ? args[2] : NULL);
}

static PyObject *batch_vec_op(BatchObject *b, int op, const char *name,
			      PyObject *fdo, PyObject *bufs, PyObject *flagso)
{
	struct esca_args a = { .op = op };
	struct vec v;
	PyObject *p;

	USABLE(b);
	if (get_fd(fdo, &a.fd) < 0 || batch_pin(b, fdo) < 0)
		return NULL;
	if (flagso && get_int(flagso, &a.flags, "flags") < 0)
		return NULL;
	if (get_vec(bufs, &v, name) < 0)
		return NULL;
	a.iov = v.iov;
	a.iovcnt = (int)(v.n > INT_MAX ? INT_MAX : v.n);
	p = batch_queue(b, &a, 0);
	put_vec(&v);
	return p;
}

static PyObject *batch_writev(BatchObject *b, PyObject *const *args,
			      Py_ssize_t nargs)
{
	if (check_nargs("writev", nargs, 2, 2) < 0)
		return NULL;
	return batch_vec_op(b, ESCA_OP_WRITEV, "writev", args[0], args[1],
			    NULL);
}

static PyObject *batch_sendmsg(BatchObject *b, PyObject *const *args,
			       Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = { "flags", "ancdata", "address" };
	PyObject *kw[3] = { NULL, NULL, NULL };
	PyObject *flags;

	if (check_nargs("sendmsg", nargs, 2, 3) < 0)
		return NULL;
	if (nargs > 2)
		kw[0] = args[2];
	if (parse_kw("sendmsg", kwnames, args, nargs, names, kw, 3) < 0)
		return NULL;
	flags = kw[0];
	if (flags && !PyLong_Check(flags) && !PyIndex_Check(flags) &&
	    PySequence_Check(flags)) {
		PyErr_SetString(PyExc_TypeError,
				"sendmsg(): ancillary data is not supported "
				"(signature: sendmsg(sock, buffers, flags=0))");
		return NULL;
	}
	if (kw[1]) {
		Py_ssize_t n = PyObject_Length(kw[1]);

		if (n < 0)
			return NULL;
		if (n > 0) {
			PyErr_SetString(PyExc_ValueError,
					"sendmsg(): ancillary data is not "
					"supported");
			return NULL;
		}
	}
	if (kw[2] && kw[2] != Py_None) {
		PyErr_SetString(PyExc_ValueError,
				"sendmsg(): a destination address is not "
				"supported");
		return NULL;
	}
	return batch_vec_op(b, ESCA_OP_SENDMSG, "sendmsg", args[0], args[1],
			    flags);
}

static PyObject *batch_sendfile(BatchObject *b, PyObject *const *args,
				Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = { "out_fd", "in_fd", "offset",
					     "count" };
	PyObject *v[4] = { NULL, NULL, NULL, NULL };
	struct esca_args a = { .op = ESCA_OP_SENDFILE, .offset = -1 };
	Py_ssize_t count;

	if (nargs > 4)
		return check_nargs("sendfile", nargs, 4, 4), NULL;
	for (Py_ssize_t i = 0; i < nargs; i++)
		v[i] = args[i];
	if (parse_kw("sendfile", kwnames, args, nargs, names, v, 4) < 0)
		return NULL;
	for (int i = 0; i < 4; i++) {
		if (!v[i]) {
			PyErr_Format(PyExc_TypeError,
				     "sendfile() missing required argument "
				     "'%s'",
				     names[i]);
			return NULL;
		}
	}
	USABLE(b);
	if (get_fd(v[0], &a.fd) < 0 || get_fd(v[1], &a.fd2) < 0 ||
	    batch_pin(b, v[0]) < 0 || batch_pin(b, v[1]) < 0)
		return NULL;
	if (v[2] != Py_None) {
		long long off;

		if (!PyLong_Check(v[2]) && !PyIndex_Check(v[2])) {
			PyErr_Format(PyExc_TypeError,
				     "sendfile() offset must be an int or "
				     "None, not '%.100s'",
				     Py_TYPE(v[2])->tp_name);
			return NULL;
		}
		off = PyLong_AsLongLong(v[2]);
		if (off == -1 && PyErr_Occurred())
			return NULL;
		if (off < 0) {
			PyErr_Format(PyExc_ValueError,
				     "sendfile() offset must be >= 0 or None, "
				     "not %lld",
				     off);
			return NULL;
		}
		a.offset = off;
	}
	if (!PyLong_Check(v[3]) && !PyIndex_Check(v[3])) {
		PyErr_Format(PyExc_TypeError,
			     "sendfile() count must be an int, not '%.100s'",
			     Py_TYPE(v[3])->tp_name);
		return NULL;
	}
	count = PyNumber_AsSsize_t(v[3], PyExc_OverflowError);
	if (count == -1 && PyErr_Occurred())
		return NULL;
	if (count < 0) {
		PyErr_Format(PyExc_ValueError,
			     "sendfile() count must be >= 0, not %zd", count);
		return NULL;
	}
	a.count = (size_t)count;
	return batch_queue(b, &a, 0);
}

static PyObject *batch_fd_op(BatchObject *b, int op, PyObject *fdo,
			     PyObject *howo)
{
	struct esca_args a = { .op = op };

	USABLE(b);
	if (get_fd(fdo, &a.fd) < 0 || batch_pin(b, fdo) < 0)
		return NULL;
	if (howo && get_int(howo, &a.how, "how") < 0)
		return NULL;
	return batch_queue(b, &a, 0);
}

static PyObject *batch_shutdown(BatchObject *b, PyObject *const *args,
				Py_ssize_t nargs)
{
	if (check_nargs("shutdown", nargs, 2, 2) < 0)
		return NULL;
	return batch_fd_op(b, ESCA_OP_SHUTDOWN, args[0], args[1]);
}

static PyObject *batch_close_fd(BatchObject *b, PyObject *const *args,
				Py_ssize_t nargs)
{
	if (check_nargs("close", nargs, 1, 1) < 0)
		return NULL;
	return batch_fd_op(b, ESCA_OP_CLOSE, args[0], NULL);
}

static PyObject *batch_fsync(BatchObject *b, PyObject *const *args,
			     Py_ssize_t nargs)
{
	if (check_nargs("fsync", nargs, 1, 1) < 0)
		return NULL;
	return batch_fd_op(b, ESCA_OP_FSYNC, args[0], NULL);
}

static PyObject *batch_setsockopt(BatchObject *b, PyObject *const *args,
				  Py_ssize_t nargs)
{
	struct esca_args a = { .op = ESCA_OP_SETSOCKOPT };
	struct iovec iov;
	Py_buffer view = { .obj = NULL };
	int ival;
	PyObject *p;

	if (check_nargs("setsockopt", nargs, 4, 4) < 0)
		return NULL;
	USABLE(b);
	if (get_fd(args[0], &a.fd) < 0 || batch_pin(b, args[0]) < 0 ||
	    get_int(args[1], &a.level, "level") < 0 ||
	    get_int(args[2], &a.optname, "optname") < 0)
		return NULL;
	if (PyLong_Check(args[3])) {
		if (get_int(args[3], &ival, "value") < 0)
			return NULL;
		iov.iov_base = &ival;
		iov.iov_len = sizeof(ival);
	} else if (PyObject_CheckBuffer(args[3])) {
		if (get_data(args[3], &iov, &view) < 0)
			return NULL;
	} else {
		PyErr_Format(PyExc_TypeError,
			     "setsockopt() value must be an int or a "
			     "bytes-like object, not '%.100s'",
			     Py_TYPE(args[3])->tp_name);
		return NULL;
	}
	a.iov = &iov;
	a.iovcnt = 1;
	p = batch_queue(b, &a, 0);
	put_data(&view);
	return p;
}

static PyObject *batch_send_many(BatchObject *b, PyObject *const *args,
				 Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = { "fds", "data", "flags" };
	PyObject *v[3] = { NULL, NULL, NULL };
	struct esca_args a = { .op = ESCA_OP_SEND };
	PyObject *seq = NULL, *data = NULL, *list = NULL;
	struct iovec iov;
	Py_ssize_t n;

	if (nargs > 3)
		return check_nargs("send_many", nargs, 2, 3), NULL;
	for (Py_ssize_t i = 0; i < nargs; i++)
		v[i] = args[i];
	if (parse_kw("send_many", kwnames, args, nargs, names, v, 3) < 0)
		return NULL;
	if (!v[0] || !v[1]) {
		PyErr_Format(PyExc_TypeError,
			     "send_many() missing required argument '%s'",
			     v[0] ? "data" : "fds");
		return NULL;
	}
	USABLE(b);
	if (v[2] && get_int(v[2], &a.flags, "flags") < 0)
		return NULL;
	/* one copy for every fd (none if it already is immutable bytes),
	 * alive until the entries that borrow it completed */
	if (PyBytes_CheckExact(v[1])) {
		data = Py_NewRef(v[1]);
	} else {
		Py_buffer view;

		if (PyObject_GetBuffer(v[1], &view, PyBUF_SIMPLE) < 0)
			return NULL;
		data = PyBytes_FromStringAndSize(view.buf, view.len);
		PyBuffer_Release(&view);
		if (!data)
			return NULL;
	}
	iov.iov_base = PyBytes_AS_STRING(data);
	iov.iov_len = (size_t)PyBytes_GET_SIZE(data);
	seq = PySequence_Fast(v[0], "send_many() argument 'fds' must be an "
				    "iterable of file descriptors");
	if (seq && PyList_Check(seq)) {
		/* a snapshot: a fileno() or a flush's _decref_socketios may
		 * change the list under the loop (the review: a fileno() that
		 * cleared it crashed the loop's borrowed reads) */
		PyObject *t = PyList_AsTuple(seq);

		Py_SETREF(seq, t);
	}
	if (!seq)
		goto error;
	n = PySequence_Fast_GET_SIZE(seq);
	list = PyList_New(n);
	if (!list)
		goto error;
	a.iov = &iov;
	a.iovcnt = 1;
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *p;

		if (get_fd(PySequence_Fast_GET_ITEM(seq, i), &a.fd) < 0 ||
		    batch_pin(b, PySequence_Fast_GET_ITEM(seq, i)) < 0)
			goto error;
		p = batch_queue(b, &a, ESCA_Q_BORROW);
		if (!p)
			goto error;
		PyList_SET_ITEM(list, i, p);
	}
	if (esca_table_pending(b->table->t)) {
		if (!b->keep && !(b->keep = PyList_New(0)))
			goto error;
		if (PyList_Append(b->keep, data) < 0)
			goto error;
	}
	Py_DECREF(data);
	Py_DECREF(seq);
	return list;
error:
	if (esca_table_pending(b->table->t)) {
		/* entries may borrow `data`: do not let it go before them */
		PyObject *et, *ev, *tb;

		PyErr_Fetch(&et, &ev, &tb);
		batch_flush_wait(b, ESCA_WHY_SYNC);
		PyErr_Restore(et, ev, tb);
	}
	Py_XDECREF(list);
	Py_XDECREF(seq);
	Py_XDECREF(data);
	return NULL;
}

/* ---- lifecycle ---- */

static int parse_executor(PyObject *o, int *kind)
{
	const char *s;

	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError,
			     "executor must be a str, not '%.100s'",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	s = PyUnicode_AsUTF8(o);
	if (!s)
		return -1;
	for (int k = 0; k < ESCA_EXEC__COUNT; k++) {
		if (strcmp(s, esca_executor_name(k)) == 0) {
			*kind = k;
			return 0;
		}
	}
#define QUOTED_NAME(E, n) " '" #n "'"
	PyErr_Format(PyExc_ValueError,
		     "unknown executor %R (one of" ESCA_EXECUTORS(QUOTED_NAME) ")",
		     o);
#undef QUOTED_NAME
	return -1;
}

static PyObject *batch_new(PyTypeObject *type, PyObject *args,
			   PyObject *kwds)
{
	static char *kwlist[] = { "executor", "capacity", "byte_budget", NULL };
	PyObject *exec = NULL;
	Py_ssize_t capacity = DEFAULT_CAPACITY, budget = DEFAULT_BYTE_BUDGET;
	BatchObject *b;
	int kind = ESCA_EXEC_AUTO;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O$nn:Batch", kwlist,
					 &exec, &capacity, &budget))
		return NULL;
	if (exec && parse_executor(exec, &kind) < 0)
		return NULL;
	if (capacity <= 0 || capacity > 32768) {
		PyErr_Format(PyExc_ValueError,
			     "capacity must be in 1..32768, not %zd", capacity);
		return NULL;
	}
	if (budget <= 0) {
		PyErr_Format(PyExc_ValueError,
			     "byte_budget must be > 0, not %zd", budget);
		return NULL;
	}
	b = (BatchObject *)type->tp_alloc(type, 0);
	if (!b)
		return NULL;
	b->owner = pthread_self();
	b->kind = kind;
	b->capacity = (unsigned)capacity;
	b->budget = (size_t)budget;
	if (batch_take_table(b) < 0) {
		Py_DECREF(b);
		return NULL;
	}
	return (PyObject *)b;
}

/* Remove b from this thread's stack of open batches. */
static int batch_unstack(BatchObject *b)
{
	PyObject *stack;

	if (!b->entered)
		return 0;
	b->entered = 0;
	stack = thread_entry(key_stack, new_list);
	if (!stack)
		return -1;
	for (Py_ssize_t i = PyList_GET_SIZE(stack) - 1; i >= 0; i--) {
		if (PyList_GET_ITEM(stack, i) == (PyObject *)b)
			return PySequence_DelItem(stack, i);
	}
	return 0;
}

/* Flush everything and give the table back.  Idempotent. */
static int batch_do_close(BatchObject *b)
{
	if (!b->table)
		return 0;
	if (!pthread_equal(b->owner, pthread_self())) {
		PyErr_SetString(PyExc_RuntimeError,
				"a batch can only be closed by the thread that "
				"started it");
		return -1;
	}
	if (b->table->dead)
		batch_cancel_all(b);
	else
		batch_flush_wait(b, ESCA_WHY_EXPLICIT);
	batch_release_table(b);
	/* whatever is left could not complete: do not leave it waiting */
	batch_cancel_all(b);
	return 0;
}

static PyObject *batch_close(BatchObject *b, PyObject *unused)
{
	(void)unused;
	if (batch_do_close(b) < 0)
		return NULL;
	if (batch_unstack(b) < 0)
		return NULL;
	if (PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *batch_flush(BatchObject *b, PyObject *unused)
{
	int r;

	(void)unused;
	USABLE(b);
	r = batch_flush_wait(b, ESCA_WHY_EXPLICIT);
	if (PyErr_CheckSignals() < 0)
		return NULL;
	return PyLong_FromLong(r < 0 ? 0 : r);
}

static PyObject *batch_enter(BatchObject *b, PyObject *unused)
{
	PyObject *stack;

	(void)unused;
	USABLE(b);
	if (!b->entered) {
		stack = thread_entry(key_stack, new_list);
		if (!stack || PyList_Append(stack, (PyObject *)b) < 0)
			return NULL;
		b->entered = 1;
	}
	return Py_NewRef(b);
}

static PyObject *batch_exit(BatchObject *b, PyObject *const *args,
			    Py_ssize_t nargs)
{
	(void)args;
	(void)nargs;
	if (batch_do_close(b) < 0)
		return NULL;
	if (batch_unstack(b) < 0)
		return NULL;
	if (PyErr_CheckSignals() < 0)
		return NULL;
	Py_RETURN_FALSE;
}

static int dict_set_u64(PyObject *d, const char *k, uint64_t v)
{
	PyObject *o = PyLong_FromUnsignedLongLong(v);
	int r;

	if (!o)
		return -1;
	r = PyDict_SetItemString(d, k, o);
	Py_DECREF(o);
	return r;
}

static PyObject *stats_dict(const struct esca_stats *s, int executor,
			    uint64_t direct)
{
	PyObject *d = PyDict_New(), *ops = NULL, *why = NULL, *hist = NULL;
	PyObject *name = NULL;
	uint64_t total = 0;

	if (!d)
		return NULL;
	if (!(ops = PyDict_New()) || !(why = PyDict_New()) ||
	    !(hist = PyDict_New()))
		goto error;
	for (int i = 0; i < ESCA_OP__COUNT; i++) {
		total += s->queued[i];
		if (dict_set_u64(ops, esca_op_name(i), s->queued[i]) < 0)
			goto error;
	}
	for (int i = 0; i < ESCA_WHY__COUNT; i++)
		if (dict_set_u64(why, esca_flush_reason_name(i), s->flush_why[i]) < 0)
			goto error;
	for (int i = 0; i < ESCA_HIST_BUCKETS; i++)
		if (dict_set_u64(hist, hist_labels[i], s->batch_hist[i]) < 0)
			goto error;
	name = PyUnicode_FromString(esca_executor_name(executor));
	if (!name || PyDict_SetItemString(d, "executor", name) < 0 ||
	    PyDict_SetItemString(d, "ops", ops) < 0 ||
	    dict_set_u64(d, "queued", total) < 0 ||
	    dict_set_u64(d, "bytes", s->bytes_queued) < 0 ||
	    dict_set_u64(d, "bytes_copied", s->bytes_copied) < 0 ||
	    dict_set_u64(d, "flushes", s->flushes) < 0 ||
	    PyDict_SetItemString(d, "flush_why", why) < 0 ||
	    dict_set_u64(d, "kernel_entries", s->kernel_entries) < 0 ||
	    dict_set_u64(d, "entries_executed", s->entries_executed) < 0 ||
	    dict_set_u64(d, "completed", s->completed) < 0 ||
	    dict_set_u64(d, "errors", s->errors) < 0 ||
	    dict_set_u64(d, "short_completed", s->short_completed) < 0 ||
	    dict_set_u64(d, "resubmitted", s->resubmitted) < 0 ||
	    dict_set_u64(d, "fallbacks", s->fallbacks) < 0 ||
	    dict_set_u64(d, "sendfile_direct", s->sendfile_direct) < 0 ||
	    dict_set_u64(d, "flushes_direct", s->flushes_direct) < 0 ||
	    dict_set_u64(d, "flushes_plain", s->flushes_plain) < 0 ||
	    dict_set_u64(d, "waits_folded", s->waits_folded) < 0 ||
	    dict_set_u64(d, "direct", direct) < 0 ||
	    PyDict_SetItemString(d, "batch_sizes", hist) < 0)
		goto error;
	Py_DECREF(name);
	Py_DECREF(ops);
	Py_DECREF(why);
	Py_DECREF(hist);
	return d;
error:
	Py_XDECREF(name);
	Py_XDECREF(ops);
	Py_XDECREF(why);
	Py_XDECREF(hist);
	Py_DECREF(d);
	return NULL;
}

static PyObject *batch_stats(BatchObject *b, PyObject *unused)
{
	struct esca_stats s = b->acc;

	(void)unused;
	if (b->table && !b->table->dead)
		stats_add_delta(&s, esca_table_stats(b->table->t), &b->base);
	return stats_dict(&s, b->executor, b->direct);
}

static PyObject *batch_get_executor(BatchObject *b, void *c)
{
	(void)c;
	return PyUnicode_FromString(esca_executor_name(b->executor));
}

static PyObject *batch_get_closed(BatchObject *b, void *c)
{
	(void)c;
	return PyBool_FromLong(b->table == NULL);
}

static PyObject *batch_get_pending(BatchObject *b, void *c)
{
	Py_ssize_t n = 0;

	(void)c;
	for (Py_ssize_t i = 0; i < b->npend; i++)
		n += !b->pend[i]->done;
	return PyLong_FromSsize_t(n);
}

static PyObject *batch_repr(BatchObject *b)
{
	return PyUnicode_FromFormat("<pyesca.Batch executor=%s%s>",
				    esca_executor_name(b->executor),
				    b->table ? "" : " closed");
}

/* Entries still in the table point at these Pendings and may borrow the
 * objects in `keep`: leak them rather than free memory the core will
 * write or read (a batch dropped by a thread that does not own it). */
static void batch_orphan(BatchObject *b)
{
	for (Py_ssize_t i = 0; i < b->npend; i++)
		b->pend[i]->batch = NULL;
	b->npend = 0;
	b->keep = NULL;
	b->pins = NULL;	/* left open: their bytes may still go */
	b->last_pin = NULL;
}

static void batch_dealloc(BatchObject *b)
{
	PyObject *et, *ev, *tb;

	PyErr_Fetch(&et, &ev, &tb);
	if (b->table) {
		/* never finished: flush rather than drop data */
		if (b->table->dead) {
			batch_cancel_all(b);
		} else if (pthread_equal(b->owner, pthread_self())) {
			batch_flush_wait(b, ESCA_WHY_LIFECYCLE);
		} else if (esca_table_pending(b->table->t)) {
			/* the owner thread's next flush of this table runs
			 * them */
			batch_orphan(b);
		}
		batch_release_table(b);
	}
	batch_cancel_all(b);
	PyMem_Free(b->pend);
	Py_CLEAR(b->keep);
	batch_unpin(b);
	PyErr_Restore(et, ev, tb);
	Py_TYPE(b)->tp_free((PyObject *)b);
}

static PyMethodDef batch_methods[] = {
	{ "write", (PyCFunction)(void (*)(void))batch_write, METH_FASTCALL,
	  "write(fd, data, /) -> Pending\n\nDeferred os.write: all of data "
	  "(copied now)." },
	{ "writev", (PyCFunction)(void (*)(void))batch_writev, METH_FASTCALL,
	  "writev(fd, buffers, /) -> Pending\n\nDeferred os.writev." },
	{ "send", (PyCFunction)(void (*)(void))batch_send, METH_FASTCALL,
	  "send(sock, data, flags=0, /) -> Pending\n\nDeferred socket.send "
	  "of all of data (like sendall)." },
	{ "sendmsg", (PyCFunction)(void (*)(void))batch_sendmsg,
	  METH_FASTCALL | METH_KEYWORDS,
	  "sendmsg(sock, buffers, flags=0) -> Pending\n\nDeferred "
	  "socket.sendmsg without ancillary data or address." },
	{ "sendfile", (PyCFunction)(void (*)(void))batch_sendfile,
	  METH_FASTCALL | METH_KEYWORDS,
	  "sendfile(out_fd, in_fd, offset, count) -> Pending\n\nDeferred "
	  "os.sendfile; offset None uses and advances the file position." },
	{ "shutdown", (PyCFunction)(void (*)(void))batch_shutdown,
	  METH_FASTCALL,
	  "shutdown(sock, how, /) -> Pending\n\nDeferred socket.shutdown." },
	{ "close", (PyCFunction)(void (*)(void))batch_close_fd, METH_FASTCALL,
	  "close(fd, /) -> Pending\n\nDeferred os.close(fd).  (To end the "
	  "batch itself, leave the with block or call finish().)" },
	{ "setsockopt", (PyCFunction)(void (*)(void))batch_setsockopt,
	  METH_FASTCALL,
	  "setsockopt(sock, level, optname, value, /) -> Pending\n\n"
	  "Deferred socket.setsockopt; value is an int or bytes-like." },
	{ "fsync", (PyCFunction)(void (*)(void))batch_fsync, METH_FASTCALL,
	  "fsync(fd, /) -> Pending\n\nDeferred os.fsync." },
	{ "send_many", (PyCFunction)(void (*)(void))batch_send_many,
	  METH_FASTCALL | METH_KEYWORDS,
	  "send_many(fds, data, flags=0) -> list[Pending]\n\nSend the same "
	  "bytes to every fd; the bytes are copied once for all." },
	{ "flush", (PyCFunction)batch_flush, METH_NOARGS,
	  "flush() -> int\n\nRun every queued op now (one kernel entry under "
	  "uring) and wait for them; the batch stays open.  Returns the "
	  "number of ops completed." },
	{ "finish", (PyCFunction)batch_close, METH_NOARGS,
	  "finish() -> None\n\nFlush and end the batch (what leaving the with "
	  "block does).  Idempotent." },
	{ "stats", (PyCFunction)batch_stats, METH_NOARGS,
	  "stats() -> dict\n\nCounters of this batch: ops per op, bytes, "
	  "flushes, kernel_entries, completed, errors, fallbacks, "
	  "batch_sizes, ..." },
	{ "__enter__", (PyCFunction)batch_enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)(void (*)(void))batch_exit, METH_FASTCALL,
	  NULL },
	{ NULL }
};

static PyGetSetDef batch_getset[] = {
	{ "executor", (getter)batch_get_executor, NULL,
	  "the executor actually used (never 'auto')", NULL },
	{ "closed", (getter)batch_get_closed, NULL, "True once finished",
	  NULL },
	{ "pending", (getter)batch_get_pending, NULL,
	  "number of ops queued and not yet complete", NULL },
	{ NULL }
};

static PyTypeObject Batch_Type = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyesca.Batch",
	.tp_basicsize = sizeof(BatchObject),
	.tp_dealloc = (destructor)batch_dealloc,
	.tp_repr = (reprfunc)batch_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Batch(executor='auto', *, capacity=DEFAULT_CAPACITY, "
		  "byte_budget=DEFAULT_BYTE_BUDGET)"
		  "\n\nA batch segment: ops queue into a table and run in the "
		  "kernel together when the batch is flushed (leaving the "
		  "with block).",
	.tp_methods = batch_methods,
	.tp_getset = batch_getset,
	.tp_new = batch_new,
};

/* ------------------------------------------------------------------ */
/* module functions                                                    */

static PyObject *mod_current(PyObject *m, PyObject *unused)
{
	PyObject *stack;
	Py_ssize_t n;

	(void)m;
	(void)unused;
	stack = thread_entry(key_stack, new_list);
	if (!stack)
		return NULL;
	n = PyList_GET_SIZE(stack);
	if (n == 0)
		Py_RETURN_NONE;
	return Py_NewRef(PyList_GET_ITEM(stack, n - 1));
}

static PyObject *cached_executors, *cached_auto;

static PyObject *mod_executors(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	if (!cached_executors) {
		PyObject *l = PyList_New(0);

		if (!l)
			return NULL;
		for (int k = ESCA_EXEC_SEQUENTIAL; k < ESCA_EXEC__COUNT; k++) {
			struct esca_config cfg = { .executor = k,
						   .capacity = 8,
						   .byte_budget = 4096 };
			struct esca_table *t;
			int err = 0;

			t = esca_table_new(&cfg, &err);
			if (!t)
				continue;
			esca_table_free(t);
			PyObject *s = PyUnicode_FromString(esca_executor_name(k));
			if (!s || PyList_Append(l, s) < 0) {
				Py_XDECREF(s);
				Py_DECREF(l);
				return NULL;
			}
			Py_DECREF(s);
		}
		cached_executors = l;
	}
	return PyList_GetSlice(cached_executors, 0,
			       PyList_GET_SIZE(cached_executors));
}

static PyObject *mod_auto_executor(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	if (!cached_auto) {
		struct esca_config cfg = { .executor = ESCA_EXEC_AUTO,
					   .capacity = 8,
					   .byte_budget = 4096 };
		struct esca_table *t;
		int err = 0;

		t = esca_table_new(&cfg, &err);
		if (!t)
			return raise_errno(-err, "cannot set up any executor");
		cached_auto = PyUnicode_FromString(
			esca_executor_name(esca_table_executor(t)));
		esca_table_free(t);
		if (!cached_auto)
			return NULL;
	}
	return Py_NewRef(cached_auto);
}

static PyObject *mod_uring_probe(PyObject *m, PyObject *unused)
{
	unsigned char ops[256];
	int last_op = -1, sso = 0, r;
	unsigned setup_flags = 0;
	PyObject *d, *names = NULL;

	(void)m;
	(void)unused;
	memset(ops, 0, sizeof(ops));
	r = esca_uring_probe(ops, (int)sizeof(ops), &last_op, &sso,
			     &setup_flags);
	d = PyDict_New();
	names = PyList_New(0);
	if (!d || !names)
		goto error;
	for (int i = 0; i < (int)sizeof(ops) && r == 0; i++) {
		PyObject *s;

		if (!ops[i])
			continue;
		s = PyUnicode_FromString(esca_uring_opname(i));
		if (!s || PyList_Append(names, s) < 0) {
			Py_XDECREF(s);
			goto error;
		}
		Py_DECREF(s);
	}
	if (dict_set_u64(d, "error", r < 0 ? (uint64_t)-r : 0) < 0 ||
	    PyDict_SetItemString(d, "opcodes", names) < 0 ||
	    PyDict_SetItemString(d, "setsockopt_cmd",
				 (r == 0 && sso) ? Py_True : Py_False) < 0 ||
	    dict_set_u64(d, "setup_flags", setup_flags) < 0)
		goto error;
	Py_DECREF(names);
	return d;
error:
	Py_XDECREF(names);
	Py_XDECREF(d);
	return NULL;
}

/* Run every entry of this thread's tables now (GIL released); their
 * Pendings are done, the batches reap them at their next flush. */
static void flush_thread_tables(TableObject *except, int why)
{
	TableObject *o = all_tables;

	while (o) {
		TableObject *next;

		if (o != except && !o->dead && esca_table_pending(o->t) &&
		    pthread_equal(o->owner, pthread_self())) {
			Py_INCREF(o);
			Py_BEGIN_ALLOW_THREADS
			esca_flush(o->t, ESCA_FLUSH_WAIT, why);
			Py_END_ALLOW_THREADS
			next = o->next;	/* o is alive: its links are current */
			Py_DECREF(o);
		} else {
			next = o->next;
		}
		o = next;
	}
}

/* os.register_at_fork(before=...): run this thread's queued ops, so the
 * child does not inherit (and run again) what the parent will run. */
static PyObject *mod_before_fork(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	flush_thread_tables(NULL, ESCA_WHY_LIFECYCLE);
	Py_RETURN_NONE;
}

static PyObject *mod_op_names(PyObject *m, PyObject *unused)
{
	PyObject *t = PyTuple_New(ESCA_OP__COUNT);

	(void)m;
	(void)unused;
	if (!t)
		return NULL;
	for (int i = 0; i < ESCA_OP__COUNT; i++) {
		PyObject *s = PyUnicode_FromString(esca_op_name(i));

		if (!s) {
			Py_DECREF(t);
			return NULL;
		}
		PyTuple_SET_ITEM(t, i, s);
	}
	return t;
}

/* ---- the lists of esca.h and catalog.h, as tuples ---- */

struct catalog_row {
	const char *name;
	const char *text;	/* help, or where a syscall is deferred */
	int seed;
};

enum row_shape { ROW_NAME, ROW_NAME_TEXT, ROW_NAME_SEED_TEXT };

#define ROW_NAME_ONLY(E, n) { #n, NULL, 0 },
#define ROW_WITH_HELP(E, n, help) { #n, help, 0 },
#define ROW_SYSCALL(E, n, seed, where) { #n, where, seed },
static const struct catalog_row executor_rows[] = { ESCA_EXECUTORS(ROW_NAME_ONLY) };
static const struct catalog_row flush_rows[] = { ESCA_FLUSH_REASONS(ROW_NAME_ONLY) };
#define ROW_LEVER(E, n, on, help) { #n, help, on },
static const struct catalog_row lever_rows[] = { ESCA_LEVERS(ROW_LEVER) };
#undef ROW_LEVER
static const struct catalog_row pass_rows[] = { ESCA_PASS_REASONS(ROW_WITH_HELP) };
static const struct catalog_row syscall_rows[] = { ESCA_SYSCALLS(ROW_SYSCALL) };
#undef ROW_NAME_ONLY
#undef ROW_WITH_HELP
#undef ROW_SYSCALL

static PyObject *rows_tuple(const struct catalog_row *rows, Py_ssize_t n,
			    enum row_shape shape)
{
	PyObject *t = PyTuple_New(n);

	for (Py_ssize_t i = 0; t && i < n; i++) {
		const struct catalog_row *r = &rows[i];
		PyObject *item;

		if (shape == ROW_NAME)
			item = PyUnicode_FromString(r->name);
		else if (shape == ROW_NAME_TEXT)
			item = Py_BuildValue("(ss)", r->name, r->text);
		else
			item = Py_BuildValue("(sOs)", r->name,
					     r->seed ? Py_True : Py_False,
					     r->text);
		if (!item)
			Py_CLEAR(t);
		else
			PyTuple_SET_ITEM(t, i, item);
	}
	return t;
}

#define ROWS(rows, shape) rows_tuple(rows, Py_ARRAY_LENGTH(rows), shape)

static PyObject *mod_executor_names(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return ROWS(executor_rows, ROW_NAME);
}

static PyObject *mod_flush_reasons(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return ROWS(flush_rows, ROW_NAME);
}

static PyObject *mod_levers(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return ROWS(lever_rows, ROW_NAME_TEXT);
}

#define LEVER_NAME_ONLY(E, n, on, help) #n,
static const char *const lever_name_list[] = { ESCA_LEVERS(LEVER_NAME_ONLY) };
#undef LEVER_NAME_ONLY
#define LEVER_DEFAULT_BIT(E, n, on, help) | (on ? 1u << LEVER_##E##_INDEX : 0u)
#define LEVER_INDEX(E, n, on, help) LEVER_##E##_INDEX,
enum { ESCA_LEVERS(LEVER_INDEX) LEVER_INDEX__COUNT };
#undef LEVER_INDEX
static const unsigned lever_default_set = 0u ESCA_LEVERS(LEVER_DEFAULT_BIT);
#undef LEVER_DEFAULT_BIT

/* Each name parse_levers() did not know, appended to the list ctx. */
static void lever_unknown(void *ctx, const char *tok, size_t n)
{
	PyObject *l = ctx, *name;

	if (PyErr_Occurred())
		return;
	name = PyUnicode_FromStringAndSize(tok, (Py_ssize_t)n);
	if (name)
		PyList_Append(l, name);
	Py_XDECREF(name);
}

/* parse_levers(text) -> (names on, unknown names): libesca's own reading
 * of ESCA_LEVERS (lists.h), for `esca run --levers`. */
static PyObject *mod_parse_levers(PyObject *m, PyObject *arg)
{
	PyObject *unknown, *on, *r = NULL;
	const char *text = PyUnicode_AsUTF8(arg);
	unsigned mask;

	(void)m;
	if (!text)
		return NULL;
	unknown = PyList_New(0);
	on = PyList_New(0);
	if (!unknown || !on)
		goto out;
	mask = esca__parse_levers(text, lever_name_list, LEVER_INDEX__COUNT,
				  lever_default_set, lever_unknown, unknown);
	if (PyErr_Occurred())
		goto out;
	for (unsigned i = 0; i < LEVER_INDEX__COUNT; i++) {
		PyObject *name;

		if (!(mask & (1u << i)))
			continue;
		name = PyUnicode_FromString(lever_name_list[i]);
		if (!name || PyList_Append(on, name) < 0) {
			Py_XDECREF(name);
			goto out;
		}
		Py_DECREF(name);
	}
	{
		PyObject *a = PyList_AsTuple(on), *b = PyList_AsTuple(unknown);

		if (a && b)
			r = PyTuple_Pack(2, a, b);
		Py_XDECREF(a);
		Py_XDECREF(b);
	}
out:
	Py_XDECREF(unknown);
	Py_XDECREF(on);
	return r;
}

/* The levers on only when named (catalog.h ESCA_LEVERS, on = 0). */
static PyObject *mod_levers_off(PyObject *m, PyObject *unused)
{
	PyObject *l = PyList_New(0), *t;

	(void)m;
	(void)unused;
	for (size_t i = 0; l && i < Py_ARRAY_LENGTH(lever_rows); i++) {
		PyObject *name;

		if (lever_rows[i].seed)
			continue;
		name = PyUnicode_FromString(lever_rows[i].name);
		if (!name || PyList_Append(l, name) < 0)
			Py_CLEAR(l);
		Py_XDECREF(name);
	}
	if (!l)
		return NULL;
	t = PyList_AsTuple(l);
	Py_DECREF(l);
	return t;
}

static PyObject *mod_pass_reasons(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return ROWS(pass_rows, ROW_NAME_TEXT);
}

static PyObject *mod_syscalls(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return ROWS(syscall_rows, ROW_NAME_SEED_TEXT);
}

/* _kernel_entry_ns(): what one kernel entry costs here, for `esca bench`.
 * A tight loop of the raw getppid system call (no work in the kernel beyond
 * entry and exit), timed with CLOCK_MONOTONIC (vDSO: no entry of its own),
 * best of `repeats` runs of `iterations`; the same loop without the call is
 * timed too, so the caller can say what the loop itself costs. */
static double now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return -1.0;
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static PyObject *mod_kernel_entry_ns(PyObject *m, PyObject *args)
{
	long iterations = 200000, repeats = 5;
	double best_call = -1.0, best_loop = -1.0;
	int failed = 0;

	(void)m;
	if (!PyArg_ParseTuple(args, "|ll", &iterations, &repeats))
		return NULL;
	if (iterations < 1 || iterations > 100000000 || repeats < 1 ||
	    repeats > 1000) {
		PyErr_SetString(PyExc_ValueError,
				"iterations 1..1e8, repeats 1..1000");
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	for (long r = 0; r < repeats && !failed; r++) {
		double t0 = now_ns(), t1, t2;
		volatile long sink = 0;

		for (long i = 0; i < iterations; i++)
			if (syscall(SYS_getppid) < 0)
				failed = 1;
		t1 = now_ns();
		for (long i = 0; i < iterations; i++)
			sink += i;
		t2 = now_ns();
		if (t0 < 0 || t1 < 0 || t2 < 0) {
			failed = 1;
			break;
		}
		if (best_call < 0 || t1 - t0 < best_call)
			best_call = t1 - t0;
		if (best_loop < 0 || t2 - t1 < best_loop)
			best_loop = t2 - t1;
	}
	Py_END_ALLOW_THREADS
	if (failed)
		return PyErr_SetFromErrno(PyExc_OSError);
	return Py_BuildValue("(dd)", best_call / (double)iterations,
			     best_loop / (double)iterations);
}

static PyMethodDef module_methods[] = {
	{ "current", mod_current, METH_NOARGS,
	  "current() -> Batch | None\n\nThe innermost open batch of this "
	  "thread." },
	{ "executors", mod_executors, METH_NOARGS,
	  "executors() -> list[str]\n\nThe executors that can be set up "
	  "here, in executor_names() order ('auto' is not one: it picks "
	  "one of them, see auto_executor())." },
	{ "executor_names", mod_executor_names, METH_NOARGS,
	  "executor_names() -> tuple[str, ...]\n\nEvery executor name "
	  "Batch() accepts, usable here or not (esca.h ESCA_EXECUTORS)." },
	{ "auto_executor", mod_auto_executor, METH_NOARGS,
	  "auto_executor() -> str\n\nThe executor 'auto' selects here." },
	{ "uring_probe", mod_uring_probe, METH_NOARGS,
	  "uring_probe() -> dict\n\nio_uring on this machine: error (0 or "
	  "errno), opcodes (names), setsockopt_cmd (bool), setup_flags." },
	{ "op_names", mod_op_names, METH_NOARGS,
	  "op_names() -> tuple[str, ...]\n\nThe ops the core defers." },
	{ "syscalls", mod_syscalls, METH_NOARGS,
	  "syscalls() -> tuple[tuple[str, bool, str], ...]\n\nThe calls "
	  "libesca.so can defer, in its order: (name, seed, where), seed "
	  "True for the seed's four wrappers, where the fds it is deferred "
	  "on (catalog.h ESCA_SYSCALLS)." },
	{ "parse_levers", mod_parse_levers, METH_O,
	  "parse_levers(text) -> tuple[tuple[str, ...], tuple[str, ...]]\n\n"
	  "A lever list as libesca reads ESCA_LEVERS: the levers it turns on "
	  "(in catalog order) and the names it does not know (ignored)." },
	{ "levers_off", mod_levers_off, METH_NOARGS,
	  "The levers on only when named (ESCA_LEVERS=+name): their names." },
	{ "levers", mod_levers, METH_NOARGS,
	  "levers() -> tuple[tuple[str, str], ...]\n\nThe levers beyond "
	  "ESCA, each switchable: (name, help) (catalog.h ESCA_LEVERS)." },
	{ "pass_reasons", mod_pass_reasons, METH_NOARGS,
	  "pass_reasons() -> tuple[tuple[str, str], ...]\n\nWhy libesca.so "
	  "passed a deferrable call to the kernel: (name, help) (catalog.h "
	  "ESCA_PASS_REASONS)." },
	{ "flush_reasons", mod_flush_reasons, METH_NOARGS,
	  "flush_reasons() -> tuple[str, ...]\n\nThe flush triggers a "
	  "table counts, in order (esca.h ESCA_FLUSH_REASONS)." },
	{ "_kernel_entry_ns", mod_kernel_entry_ns, METH_VARARGS,
	  "_kernel_entry_ns(iterations=200000, repeats=5) -> (call_ns, "
	  "loop_ns)\n\nNanoseconds per raw getppid system call in a tight C "
	  "loop (best of repeats; the loop included), and per iteration of "
	  "the same loop without the call." },
	{ "_before_fork", mod_before_fork, METH_NOARGS,
	  "Flush this thread's open batches (os.register_at_fork)." },
	{ NULL }
};

static struct PyModuleDef core_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "pyesca._core",
	.m_doc = "The native core of pyesca: batch tables and executors.",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
	static int atfork_done;
	PyObject *m;

	if (PyType_Ready(&Table_Type) < 0 || PyType_Ready(&Pending_Type) < 0 ||
	    PyType_Ready(&Batch_Type) < 0)
		return NULL;
	if (!key_tables &&
	    !(key_tables = PyUnicode_InternFromString("pyesca._core.tables")))
		return NULL;
	if (!key_stack &&
	    !(key_stack = PyUnicode_InternFromString("pyesca._core.stack")))
		return NULL;
	if (!str_io_refs && !(str_io_refs = PyUnicode_InternFromString("_io_refs")))
		return NULL;
	if (!str_decref_socketios &&
	    !(str_decref_socketios =
		      PyUnicode_InternFromString("_decref_socketios")))
		return NULL;
	if (!str_fileno && !(str_fileno = PyUnicode_InternFromString("fileno")))
		return NULL;
	if (!str_closed && !(str_closed = PyUnicode_InternFromString("_closed")))
		return NULL;
	if (!str_ssl && !(str_ssl = PyUnicode_InternFromString("ssl")))
		return NULL;
	if (!socket_class) {
		PyObject *sm = PyImport_ImportModule("socket");

		socket_class = sm ? PyObject_GetAttrString(sm, "socket") : NULL;
		Py_XDECREF(sm);
		if (!socket_class || !PyType_Check(socket_class)) {
			Py_CLEAR(socket_class);
			PyErr_Clear();	/* every pin through its method */
		}
	}
	if (!atfork_done) {
		if (pthread_atfork(NULL, NULL, atfork_child) != 0) {
			PyErr_SetString(PyExc_RuntimeError,
					"pthread_atfork failed");
			return NULL;
		}
		atfork_done = 1;
	}
	m = PyModule_Create(&core_module);
	if (!m)
		return NULL;
	if (PyModule_AddType(m, &Batch_Type) < 0 ||
	    PyModule_AddType(m, &Pending_Type) < 0 ||
	    PyModule_AddIntConstant(m, "DEFAULT_CAPACITY", DEFAULT_CAPACITY) <
		    0 ||
	    PyModule_AddIntConstant(m, "DEFAULT_BYTE_BUDGET",
				    (long)DEFAULT_BYTE_BUDGET) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
