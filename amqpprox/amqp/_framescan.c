/*
 * The relay's frame walk in C: amqpprox.amqp._framescan.scan.
 *
 * Same contract as amqpprox.amqp.scanner._scan_py (the pure-Python version, used when
 * this extension is not built):
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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { DONE = 0, PARTIAL = 1, TOO_BIG = 2, BAD_END = 3 };

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
    const unsigned char *data = (const unsigned char *)view.buf;
    const Py_ssize_t n = view.len;
    if (pos < 0 || pos > n) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos is outside data");
        return NULL;
    }
    int status = DONE;
    Py_ssize_t frames = 0, need = 0, close_offset = -1;
    int close_flags = 0;
    while (n - pos >= 7) {
        const unsigned char *h = data + pos;
        const unsigned int channel = ((unsigned int)h[1] << 8) | h[2];
        const long long size = ((long long)h[3] << 24) | ((long long)h[4] << 16) |
                               ((long long)h[5] << 8) | (long long)h[6];
        if (size > (long long)max_size) {
            status = TOO_BIG;
            break;
        }
        if (channel == 0 && h[0] == 1 && size >= 4) {
            if (n - pos < 11) {
                break; /* DONE: keep the header until its method ids arrive */
            }
            const unsigned int class_id = ((unsigned int)h[7] << 8) | h[8];
            const unsigned int method_id = ((unsigned int)h[9] << 8) | h[10];
            if (class_id == 10 && (method_id == 50 || method_id == 51)) {
                close_flags |= method_id == 50 ? 1 : 2;
                close_offset = pos;
            }
        }
        const Py_ssize_t end = pos + 7 + (Py_ssize_t)size; /* the end octet's offset */
        if (end >= n) {
            status = PARTIAL;
            need = end + 1 - n;
            break;
        }
        if (data[end] != 0xCE) {
            status = BAD_END;
            break;
        }
        frames++;
        pos = end + 1;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(innnin)", status, pos, frames, need, close_flags, close_offset);
}

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
    return PyModule_Create(&module);
}
