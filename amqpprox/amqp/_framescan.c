/*
 * The relay's frame walk in C: amqpprox.amqp._framescan.scan and FrameScanner.
 *
 * scan has the contract of amqpprox.amqp.scanner.scan_py (the pure-Python version, used
 * when this extension is not built):
 *
 *   scan(data, pos, max_size) -> (status, pos, frames, need, close_flags, close_offset)
 *
 * Walks whole AMQP 0-9-1 frames (7-byte header, payload, end octet 0xCE) in ``data``
 * from offset ``pos``. It stops
 *   DONE (0)      when fewer than 7 bytes are left, or a channel-0 method frame's
 *                 class and method ids have not arrived yet: ``pos`` is where the
 *                 caller keeps the rest as the next header's first bytes;
 *   PARTIAL (1)   at a frame that ends in a later read: ``need`` bytes of it are to come,
 *                 its end octet included;
 *   TOO_BIG (2)   at a frame whose payload exceeds ``max_size``: ``pos`` is its start;
 *   BAD_END (3)   at a frame whose end octet is not 0xCE: ``pos`` is its start.
 * ``frames`` counts the whole frames walked. ``close_flags`` has bit 1 for a channel-0
 * Connection.Close seen and bit 2 for a Connection.CloseOk (seen from their headers),
 * ``close_offset`` the offset of the last of them (-1 if none).
 *
 * Nothing is allocated but the result tuple; the bytes are read in place.
 *
 * FrameScanner is amqpprox.amqp.scanner.PyFrameScanner as a C type: the state a relay
 * direction keeps between reads (frames counted, the bytes still to come of a split
 * frame, the first bytes of a split header, Close/CloseOk seen) and feed(), which walks
 * one read and allocates nothing unless a header was split (then the few held bytes and
 * the read are joined once). One C call per read instead of a Python method around the
 * walk: the relay's per-read cost is most of what the proxy adds to small messages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

enum { DONE = 0, PARTIAL = 1, TOO_BIG = 2, BAD_END = 3 };
enum { HEADER = 7, METHOD_HEADER = 11, END_OCTET = 0xCE };

typedef struct {
    int status;
    Py_ssize_t pos, frames, need, close_offset;
    int close_flags;
} Walk;

/* The payload size a frame header declares (octets 3..6, big-endian). */
static inline long long
frame_size(const unsigned char *h)
{
    return ((long long)h[3] << 24) | ((long long)h[4] << 16) | ((long long)h[5] << 8) |
           (long long)h[6];
}

static void
walk(const unsigned char *data, Py_ssize_t n, Py_ssize_t pos, long long max_size, Walk *w)
{
    w->status = DONE;
    w->frames = w->need = 0;
    w->close_offset = -1;
    w->close_flags = 0;
    while (n - pos >= HEADER) {
        const unsigned char *h = data + pos;
        const unsigned int channel = ((unsigned int)h[1] << 8) | h[2];
        const long long size = frame_size(h);
        if (size > max_size) {
            w->status = TOO_BIG;
            break;
        }
        if (channel == 0 && h[0] == 1 && size >= 4) {
            if (n - pos < METHOD_HEADER) {
                break; /* DONE: keep the header until its method ids arrive */
            }
            const unsigned int class_id = ((unsigned int)h[7] << 8) | h[8];
            const unsigned int method_id = ((unsigned int)h[9] << 8) | h[10];
            if (class_id == 10 && (method_id == 50 || method_id == 51)) {
                w->close_flags |= method_id == 50 ? 1 : 2;
                w->close_offset = pos;
            }
        }
        const Py_ssize_t end = pos + HEADER + (Py_ssize_t)size; /* the end octet's offset */
        if (end >= n) {
            w->status = PARTIAL;
            w->need = end + 1 - n;
            break;
        }
        if (data[end] != END_OCTET) {
            w->status = BAD_END;
            break;
        }
        w->frames++;
        pos = end + 1;
    }
    w->pos = pos;
}

static PyObject *
scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "scan(data, pos, max_size) takes 3 arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_size = PyLong_AsSsize_t(args[2]);
    if (max_size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    if (pos < 0 || pos > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos is outside data");
        return NULL;
    }
    Walk w;
    walk((const unsigned char *)view.buf, view.len, pos, max_size, &w);
    PyBuffer_Release(&view);
    return Py_BuildValue("(innnin)", w.status, w.pos, w.frames, w.need, w.close_flags,
                         w.close_offset);
}

/* -- FrameScanner ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t max_frame;    /* largest whole frame, its 8 octets of overhead included */
    long long frames;
    char close_seen;
    char close_ok_seen;
    Py_ssize_t close_offset; /* in the bytes last fed; negative: began in an earlier read */
    Py_ssize_t need;         /* bytes still to come of the current frame, end octet included */
    unsigned char head[METHOD_HEADER]; /* first bytes of a frame whose header was split */
    Py_ssize_t head_len;
    PyObject *error;         /* str: what was wrong, "" until then */
} Scanner;

static PyObject *empty_text;
static PyObject *bad_end_text;

static int
scanner_init(Scanner *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"max_frame", NULL};
    Py_ssize_t max_frame;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", keywords, &max_frame)) {
        return -1;
    }
    self->max_frame = max_frame;
    self->frames = 0;
    self->close_seen = self->close_ok_seen = 0;
    self->close_offset = 0;
    self->need = 0;
    self->head_len = 0;
    Py_INCREF(empty_text);
    Py_XSETREF(self->error, empty_text);
    return 0;
}

static void
scanner_dealloc(Scanner *self)
{
    Py_XDECREF(self->error);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
at_boundary(const Scanner *self)
{
    return self->need == 0 && self->head_len == 0;
}

/* feed(data) -> -1 if every byte was valid, else the offset in data where the faulty
   frame starts (0 if it began in an earlier read); error then says what was wrong. */
static PyObject *
scanner_feed(Scanner *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    Py_ssize_t n = view.len;
    unsigned char *joined = NULL;
    Py_ssize_t base = 0;
    if (self->head_len) {
        /* Rare: a header split across reads. Walk the joined bytes, report offsets in
           the caller's data. */
        base = self->head_len;
        joined = PyMem_Malloc((size_t)(base + n));
        if (joined == NULL) {
            PyBuffer_Release(&view);
            return PyErr_NoMemory();
        }
        memcpy(joined, self->head, (size_t)base);
        memcpy(joined + base, data, (size_t)n);
        data = joined;
        n += base;
        self->head_len = 0;
    }
    Py_ssize_t pos = 0, result = -1;
    long long frames = 0;
    const Py_ssize_t need = self->need;
    if (need) { /* the rest of a frame whose header came in an earlier read */
        if (need > n) {
            self->need = need - n;
            goto done;
        }
        self->need = 0;
        if (data[need - 1] != END_OCTET) {
            Py_INCREF(bad_end_text);
            Py_XSETREF(self->error, bad_end_text);
            result = 0;
            goto done;
        }
        pos = need;
        frames = 1;
    }
    Walk w;
    walk(data, n, pos, (long long)self->max_frame - 8, &w);
    self->frames += frames + w.frames;
    if (w.close_flags) {
        if (w.close_flags & 1) {
            self->close_seen = 1;
        }
        if (w.close_flags & 2) {
            self->close_ok_seen = 1;
        }
        self->close_offset = w.close_offset - base;
    }
    if (w.status == DONE) {
        const Py_ssize_t rest = n - w.pos; /* under 11 bytes: see walk() */
        if (rest > 0) {
            memcpy(self->head, data + w.pos, (size_t)rest);
            self->head_len = rest;
        }
    }
    else if (w.status == PARTIAL) {
        self->need = w.need;
    }
    else {
        PyObject *text;
        if (w.status == TOO_BIG) {
            text = PyUnicode_FromFormat("frame of %lld bytes exceeds frame-max %zd",
                                        frame_size(data + w.pos) + 8, self->max_frame);
            if (text == NULL) {
                result = -2;
                goto done;
            }
        }
        else {
            Py_INCREF(bad_end_text);
            text = bad_end_text;
        }
        Py_XSETREF(self->error, text);
        result = w.pos - base > 0 ? w.pos - base : 0;
    }
done:
    PyMem_Free(joined);
    PyBuffer_Release(&view);
    if (result == -2) {
        return NULL;
    }
    return PyLong_FromSsize_t(result);
}

static PyObject *
scanner_at_boundary(Scanner *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(at_boundary(self));
}

/* boundary_offset(data) -> where in data the frame in progress ends (0 at a boundary),
   or -1 if it ends in a later read. */
static PyObject *
scanner_boundary_offset(Scanner *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    Py_ssize_t offset;
    if (at_boundary(self)) {
        offset = 0;
    }
    else if (self->head_len) {
        unsigned char h[HEADER];
        const Py_ssize_t have = self->head_len;
        if (have + n < HEADER) {
            offset = -1;
        }
        else {
            for (Py_ssize_t i = 0; i < HEADER; i++) {
                h[i] = i < have ? self->head[i] : data[i - have];
            }
            const long long end = frame_size(h) + 8 - have;
            offset = end <= n ? (Py_ssize_t)end : -1;
        }
    }
    else {
        offset = self->need <= n ? self->need : -1;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(offset);
}

static PyObject *
scanner_get_frames(Scanner *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->frames);
}

static PyMemberDef scanner_members[] = {
    {"max_frame", T_PYSSIZET, offsetof(Scanner, max_frame), READONLY,
     "largest whole frame, its 8 octets of overhead included"},
    {"close_seen", T_BOOL, offsetof(Scanner, close_seen), 0,
     "a channel-0 Connection.Close went by"},
    {"close_ok_seen", T_BOOL, offsetof(Scanner, close_ok_seen), 0,
     "a channel-0 Connection.CloseOk went by"},
    {"close_offset", T_PYSSIZET, offsetof(Scanner, close_offset), READONLY,
     "offset in the bytes last fed of the latest Close/CloseOk (negative: an earlier read)"},
    {"error", T_OBJECT_EX, offsetof(Scanner, error), READONLY, "what was wrong, or \"\""},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef scanner_getset[] = {
    {"frames", (getter)scanner_get_frames, NULL, "whole frames walked", NULL},
    {"at_boundary", (getter)scanner_at_boundary, NULL, "no frame is in progress", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef scanner_methods[] = {
    {"feed", (PyCFunction)scanner_feed, METH_O,
     "feed(data) -> -1, or the offset in data where a faulty frame starts"},
    {"boundary_offset", (PyCFunction)scanner_boundary_offset, METH_O,
     "boundary_offset(data) -> where the frame in progress ends in data (0 at a boundary), "
     "or -1"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "amqpprox.amqp._framescan.FrameScanner",
    .tp_doc = "Counts frames in one direction of a relayed connection (see scanner.py).",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)scanner_init,
    .tp_dealloc = (destructor)scanner_dealloc,
    .tp_members = scanner_members,
    .tp_getset = scanner_getset,
    .tp_methods = scanner_methods,
};

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "scan(data, pos, max_size) -> (status, pos, frames, need, close_flags, close_offset)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_framescan", "The relay's frame walk, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__framescan(void)
{
    empty_text = PyUnicode_InternFromString("");
    bad_end_text = PyUnicode_InternFromString("frame end octet is not 0xCE");
    if (empty_text == NULL || bad_end_text == NULL || PyType_Ready(&ScannerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "FrameScanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
