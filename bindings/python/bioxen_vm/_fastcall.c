/*
 * bioxen_vm._fastcall: the hot calls of the Python package compiled against the CPython API.
 *
 * A call through ctypes or cffi (ABI mode) spends most of its time in the foreign call
 * machinery and in building the answer in Python: an execution of a cached chunk took about
 * 2.8 us, of which 0.13 us in the library. This module makes the same calls from C:
 * executions (`bioxen_vm_execute_into` and the manager variant, on a result buffer from a
 * small pool, the result dict, the shape of `_convert.result_dict`, built straight from the
 * view) and the session round trip (`bioxen_vm_manager_send_input`,
 * `bioxen_vm_manager_read_output`). The GIL is released around every library call.
 *
 * It does not link the library: `bind` receives the addresses of the functions from the
 * loaded backend (so it always calls the library that backend loaded, `BIOXEN_VM_LIB`
 * included) and the Python helpers it shares with the pure path (`values_of` and its
 * cache, the backend's `fail`). Argument conversion above this (timeouts, ids, args JSON)
 * stays in Python.
 *
 * Thread safety: the pool is only touched with the GIL held; the library call runs without
 * it, on a buffer no other thread holds.
 *
 * Ctrl-C: nothing here records the call. While the main thread blocks in one of these, the
 * Python frame that called it is what bioxen_vm/_sigint.py looks for on SIGINT to stop it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "bioxen_vm.h"

typedef int32_t (*execute_into_fn)(uint64_t, const uint8_t *, size_t, const char *, uint64_t,
                                   bioxen_vm_result_buffer *, const bioxen_vm_result **);
typedef int32_t (*manager_execute_into_fn)(uint64_t, const char *, const uint8_t *, size_t,
                                           const char *, uint64_t, bioxen_vm_result_buffer *,
                                           const bioxen_vm_result **);
typedef int32_t (*buffer_new_fn)(bioxen_vm_result_buffer **);
typedef int32_t (*buffer_free_fn)(bioxen_vm_result_buffer *);
typedef int32_t (*send_input_fn)(uint64_t, const char *, const char *, size_t);
typedef int32_t (*read_output_fn)(uint64_t, const char *, uint64_t, int32_t, bioxen_vm_bytes *,
                                  bool *);
typedef void (*bytes_free_fn)(bioxen_vm_bytes *);

#define POOL_MAX 64

static execute_into_fn execute_into;
static manager_execute_into_fn manager_execute_into;
static buffer_new_fn buffer_new;
static buffer_free_fn buffer_free;
static send_input_fn send_input;
static read_output_fn read_output;
static bytes_free_fn bytes_free;
static PyObject *values_of;    /* _convert.values_of */
static PyObject *values_cache; /* _convert._values_cache: bytes -> tuple of scalars */
static PyObject *fail;         /* backend.fail: raises the exception of a status */
static bioxen_vm_result_buffer *pool[POOL_MAX];
static int pool_len;

static PyObject *k_stdout, *k_stderr, *k_return_code, *k_success, *k_values, *k_error,
    *k_duration, *empty_str, *s_strip;
/* A dict with the result's keys in order: each result is a copy of it (a copy of a dict
 * with no deletions clones its key table, so filling it never resizes). */
static PyObject *template;

/* The library functions this module calls, in the order `bind` stores them; exported to
 * Python as `FUNCTIONS`, the names whose addresses `bind` wants. */
#define N_FUNCTIONS 7
static const char *const FUNCTIONS[N_FUNCTIONS] = {
    "bioxen_vm_execute_into",       "bioxen_vm_manager_execute_into",
    "bioxen_vm_result_buffer_new",  "bioxen_vm_result_buffer_free",
    "bioxen_vm_manager_send_input", "bioxen_vm_manager_read_output",
    "bioxen_vm_bytes_free",
};

/* The address of the C function `name` in `addresses` (a dict of name -> int), or NULL
 * with an exception. */
static void *address(PyObject *addresses, const char *name)
{
    PyObject *value = PyDict_GetItemString(addresses, name); /* borrowed */
    if (value == NULL) {
        PyErr_Format(PyExc_KeyError, "bind: no address for %s", name);
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(value);
    if (p == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "bind: the address of %s is NULL", name);
    return p;
}

/* bind(addresses, values_of, cache, fail): the addresses of the loaded library's functions
 * (a dict keyed by C name), then the Python helpers. Once per process. */
static PyObject *fc_bind(PyObject *self, PyObject *args)
{
    PyObject *addresses, *fn, *cache, *raise;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!OO!O:bind", &PyDict_Type, &addresses, &fn, &PyDict_Type,
                          &cache, &raise))
        return NULL;
    if (!PyCallable_Check(fn) || !PyCallable_Check(raise)) {
        PyErr_SetString(PyExc_TypeError, "bind: values_of and fail must be callable");
        return NULL;
    }
    if (execute_into != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind: already bound to a library");
        return NULL;
    }
    void *p[N_FUNCTIONS];
    for (int i = 0; i < N_FUNCTIONS; i++)
        if ((p[i] = address(addresses, FUNCTIONS[i])) == NULL)
            return NULL;
    /* Object pointers to function pointers: the addresses come from dlsym. */
    manager_execute_into = (manager_execute_into_fn)p[1];
    buffer_new = (buffer_new_fn)p[2];
    buffer_free = (buffer_free_fn)p[3];
    send_input = (send_input_fn)p[4];
    read_output = (read_output_fn)p[5];
    bytes_free = (bytes_free_fn)p[6];
    execute_into = (execute_into_fn)p[0]; /* last: it marks the module as bound */
    Py_INCREF(fn);
    values_of = fn;
    Py_INCREF(cache);
    values_cache = cache;
    Py_INCREF(raise);
    fail = raise;
    Py_RETURN_NONE;
}

/* Frees the pooled buffers (at exit). Buffers held by running calls are not in the pool. */
static PyObject *fc_release(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    while (pool_len > 0)
        buffer_free(pool[--pool_len]);
    Py_RETURN_NONE;
}

/* Library output as str: invalid UTF-8 replaced; stripped at both ends when asked. */
static PyObject *text(const bioxen_vm_bytes *b, int strip)
{
    if (b->len == 0) {
        Py_INCREF(empty_str);
        return empty_str;
    }
    PyObject *s = PyUnicode_DecodeUTF8((const char *)b->data, (Py_ssize_t)b->len, "replace");
    if (s == NULL || !strip)
        return s;
    /* str.strip() can only change the text when an end is not a printable ASCII byte. */
    uint8_t first = b->data[0], last = b->data[b->len - 1];
    if (first > 0x20 && first < 0x7f && last > 0x20 && last < 0x7f)
        return s;
    PyObject *stripped = PyObject_CallMethodObjArgs(s, s_strip, NULL);
    Py_DECREF(s);
    return stripped;
}

/* The values JSON of the last result that was found in the cache, and its tuple (the same
 * values a loop gets each time are then one memcmp away). Touched with the GIL held. */
#define LAST_MAX 64
static char last_json[LAST_MAX];
static size_t last_len;
static PyObject *last_values;

/* The returned values (a JSON array) as a new list: the pure path's values_of, with its
 * cache looked up here first. */
static PyObject *values(const bioxen_vm_bytes *b)
{
    if (b->len == 0 || (b->len == 2 && b->data[0] == '[' && b->data[1] == ']'))
        return PyList_New(0);
    if (last_values != NULL && b->len == last_len && memcmp(b->data, last_json, last_len) == 0)
        return PySequence_List(last_values);
    PyObject *key = PyBytes_FromStringAndSize((const char *)b->data, (Py_ssize_t)b->len);
    if (key == NULL)
        return NULL;
    PyObject *cached = PyDict_GetItemWithError(values_cache, key); /* borrowed */
    PyObject *list;
    if (cached != NULL && PyTuple_CheckExact(cached)) {
        list = PySequence_List(cached);
        if (b->len <= LAST_MAX) {
            Py_INCREF(cached);
            Py_XSETREF(last_values, cached);
            memcpy(last_json, b->data, b->len);
            last_len = b->len;
        }
    } else if (PyErr_Occurred()) {
        list = NULL;
    } else {
        list = PyObject_CallFunctionObjArgs(values_of, key, NULL);
    }
    Py_DECREF(key);
    return list;
}

static int set(PyObject *dict, PyObject *key, PyObject *value)
{
    if (value == NULL)
        return -1;
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *result_dict(const bioxen_vm_result *r)
{
    PyObject *d = PyDict_Copy(template);
    if (d == NULL)
        return NULL;
    if (set(d, k_stdout, text(&r->stdout_text, 1)) || set(d, k_stderr, text(&r->stderr_text, 1)) ||
        set(d, k_return_code, PyLong_FromLong(r->return_code)) ||
        set(d, k_success, PyBool_FromLong(r->success)) || set(d, k_values, values(&r->values_json)) ||
        set(d, k_error, r->error_message.len ? text(&r->error_message, 0) : (Py_INCREF(Py_None), Py_None)) ||
        set(d, k_duration, PyFloat_FromDouble((double)r->duration_ns / 1e9))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static bioxen_vm_result_buffer *take_buffer(int32_t *status)
{
    if (pool_len > 0)
        return pool[--pool_len];
    bioxen_vm_result_buffer *buffer = NULL;
    *status = buffer_new(&buffer);
    return buffer;
}

static void give_back(bioxen_vm_result_buffer *buffer)
{
    if (pool_len < POOL_MAX)
        pool[pool_len++] = buffer;
    else
        buffer_free(buffer);
}

/* A failed call: `fail` raises the status's exception with this thread's last error
 * message (nothing else has called the library on this thread since). A call that Ctrl-C
 * stopped (INTERRUPTED, see _sigint.py) first runs the pending signal handlers, so that what
 * the SIGINT handler raises (KeyboardInterrupt) is the call's exception. */
static PyObject *failed(int32_t status)
{
    if (status == BIOXEN_VM_STATUS_INTERRUPTED && PyErr_CheckSignals() < 0)
        return NULL;
    PyObject *none = PyObject_CallFunction(fail, "i", (int)status);
    if (none != NULL) {
        Py_DECREF(none);
        PyErr_Format(PyExc_RuntimeError, "bioxen_vm: status %d raised nothing", (int)status);
    }
    return NULL;
}

/* The shared tail: the dict on success, the exception on failure. */
static PyObject *finish(int32_t status, bioxen_vm_result_buffer *buffer, const bioxen_vm_result *r)
{
    PyObject *out = status ? NULL : result_dict(r);
    give_back(buffer);
    return status ? failed(status) : out;
}

static int arg_u64(PyObject *o, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Lua code: a bytes object as it is; a str as UTF-8 (the string's own UTF-8 form, which
 * for ASCII text is its data: no copy), with lone surrogates encoded through
 * "surrogateescape" as the pure path does. `*keep` gets a reference to drop after the call
 * (NULL when there is none). */
static int arg_code(PyObject *o, const char **data, Py_ssize_t *len, PyObject **keep)
{
    *keep = NULL;
    if (PyBytes_CheckExact(o)) {
        *data = PyBytes_AS_STRING(o);
        *len = PyBytes_GET_SIZE(o);
        return 0;
    }
    if (PyUnicode_CheckExact(o)) {
        *data = PyUnicode_AsUTF8AndSize(o, len);
        if (*data != NULL)
            return 0;
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
            return -1;
        PyErr_Clear();
        PyObject *b = PyUnicode_AsEncodedString(o, "utf-8", "surrogateescape");
        if (b == NULL)
            return -1;
        *keep = b;
        *data = PyBytes_AS_STRING(b);
        *len = PyBytes_GET_SIZE(b);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "code must be str or bytes, not %.100s", Py_TYPE(o)->tp_name);
    return -1;
}

static int arg_bytes(PyObject *o, const char *what)
{
    if (PyBytes_CheckExact(o))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s must be bytes, not %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* Whether the module is bound and the call has `expected` arguments (else an exception). */
static int ready(const char *name, Py_ssize_t n, Py_ssize_t expected)
{
    if (execute_into == NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s: not bound to a library", name);
        return 0;
    }
    if (n != expected) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments (%zd given)", name, expected, n);
        return 0;
    }
    return 1;
}

/* What both calls share: the code, arguments and timeout checked, a buffer taken, the
 * library called without the GIL (the manager's function when `id` is not NULL), the dict
 * built from the view. */
static PyObject *run(uint64_t handle, const char *id, PyObject *code_obj, PyObject *args_obj,
                     PyObject *ms_obj)
{
    uint64_t ms;
    const char *code;
    Py_ssize_t len;
    PyObject *keep;
    if (arg_bytes(args_obj, "args") || arg_u64(ms_obj, &ms) ||
        arg_code(code_obj, &code, &len, &keep))
        return NULL;
    int32_t status = 0;
    bioxen_vm_result_buffer *buffer = take_buffer(&status);
    if (status) {
        Py_XDECREF(keep);
        return failed(status);
    }
    const bioxen_vm_result *r = NULL;
    const char *args = PyBytes_AS_STRING(args_obj);
    Py_BEGIN_ALLOW_THREADS
    if (id == NULL)
        status = execute_into(handle, (const uint8_t *)code, (size_t)len, args, ms, buffer, &r);
    else
        status = manager_execute_into(handle, id, (const uint8_t *)code, (size_t)len, args, ms,
                                      buffer, &r);
    Py_END_ALLOW_THREADS
    Py_XDECREF(keep);
    return finish(status, buffer, r);
}

/* execute(vm, code, args_json, timeout_ms) -> dict */
static PyObject *fc_execute(PyObject *self, PyObject *const *a, Py_ssize_t n)
{
    uint64_t vm;
    (void)self;
    if (!ready("execute", n, 4) || arg_u64(a[0], &vm))
        return NULL;
    return run(vm, NULL, a[1], a[2], a[3]);
}

/* The id argument of the manager calls: bytes without NUL (the C API's NUL-terminated id). */
static const char *arg_id(PyObject *o)
{
    if (arg_bytes(o, "vm_id"))
        return NULL;
    if ((size_t)PyBytes_GET_SIZE(o) != strlen(PyBytes_AS_STRING(o))) {
        PyErr_SetString(PyExc_ValueError, "vm_id must not contain NUL characters");
        return NULL;
    }
    return PyBytes_AS_STRING(o);
}

/* manager_execute(manager, vm_id, code, args_json, timeout_ms) -> dict */
static PyObject *fc_manager_execute(PyObject *self, PyObject *const *a, Py_ssize_t n)
{
    uint64_t manager;
    const char *id;
    (void)self;
    if (!ready("manager_execute", n, 5) || arg_u64(a[0], &manager) || (id = arg_id(a[1])) == NULL)
        return NULL;
    return run(manager, id, a[2], a[3], a[4]);
}

/* send_input(manager, vm_id, input) -> None: the input (str or bytes, as code) with a
 * newline added when it does not end with one. */
static PyObject *fc_send_input(PyObject *self, PyObject *const *a, Py_ssize_t n)
{
    uint64_t manager;
    const char *id, *data;
    Py_ssize_t len;
    PyObject *keep;
    char small[256];
    (void)self;
    if (!ready("send_input", n, 3) || arg_u64(a[0], &manager) || (id = arg_id(a[1])) == NULL ||
        arg_code(a[2], &data, &len, &keep))
        return NULL;
    char *line = (char *)data;
    if (len == 0 || data[len - 1] != '\n') {
        line = (size_t)len < sizeof small ? small : PyMem_Malloc((size_t)len + 1);
        if (line == NULL) {
            Py_XDECREF(keep);
            return PyErr_NoMemory();
        }
        memcpy(line, data, (size_t)len);
        line[len++] = '\n';
    }
    int32_t status;
    Py_BEGIN_ALLOW_THREADS
    status = send_input(manager, id, line, (size_t)len);
    Py_END_ALLOW_THREADS
    if (line != data && line != small)
        PyMem_Free(line);
    Py_XDECREF(keep);
    if (status)
        return failed(status);
    Py_RETURN_NONE;
}

/* read_output(manager, vm_id, timeout_ms, flags) -> str or None: the session's buffered
 * output, invalid UTF-8 replaced. */
static PyObject *fc_read_output(PyObject *self, PyObject *const *a, Py_ssize_t n)
{
    uint64_t manager, ms;
    const char *id;
    (void)self;
    if (!ready("read_output", n, 4) || arg_u64(a[0], &manager) || (id = arg_id(a[1])) == NULL ||
        arg_u64(a[2], &ms))
        return NULL;
    long flags = PyLong_AsLong(a[3]);
    if (flags == -1 && PyErr_Occurred())
        return NULL;
    bioxen_vm_bytes out = {NULL, 0};
    bool has = false;
    int32_t status;
    Py_BEGIN_ALLOW_THREADS
    status = read_output(manager, id, ms, (int32_t)flags, &out, &has);
    Py_END_ALLOW_THREADS
    if (status)
        return failed(status);
    PyObject *text = NULL;
    if (!has) {
        Py_INCREF(Py_None);
        text = Py_None;
    } else {
        text = PyUnicode_DecodeUTF8((const char *)out.data, (Py_ssize_t)out.len, "replace");
    }
    bytes_free(&out);
    return text;
}

static PyMethodDef methods[] = {
    {"bind", fc_bind, METH_VARARGS,
     "bind(addresses, values_of, cache, fail): addresses maps C function names to ints"},
    {"release", fc_release, METH_NOARGS, "release(): frees the pooled result buffers"},
    {"execute", (PyCFunction)(void (*)(void))fc_execute, METH_FASTCALL,
     "execute(vm, code, args_json, timeout_ms) -> the result dict (raises on failure)"},
    {"manager_execute", (PyCFunction)(void (*)(void))fc_manager_execute, METH_FASTCALL,
     "manager_execute(manager, vm_id, code, args_json, timeout_ms) -> the result dict"},
    {"send_input", (PyCFunction)(void (*)(void))fc_send_input, METH_FASTCALL,
     "send_input(manager, vm_id, input) -> None (a newline is added when missing)"},
    {"read_output", (PyCFunction)(void (*)(void))fc_read_output, METH_FASTCALL,
     "read_output(manager, vm_id, timeout_ms, flags) -> str or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bioxen_vm._fastcall",
    "The hot calls of bioxen_vm in C (see _fastcall.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcall(void)
{
    if (!(k_stdout = PyUnicode_InternFromString("stdout")) ||
        !(k_stderr = PyUnicode_InternFromString("stderr")) ||
        !(k_return_code = PyUnicode_InternFromString("return_code")) ||
        !(k_success = PyUnicode_InternFromString("success")) ||
        !(k_values = PyUnicode_InternFromString("values")) ||
        !(k_error = PyUnicode_InternFromString("error")) ||
        !(k_duration = PyUnicode_InternFromString("duration")) ||
        !(empty_str = PyUnicode_FromStringAndSize("", 0)) ||
        !(s_strip = PyUnicode_InternFromString("strip")) || !(template = PyDict_New()))
        return NULL;
    PyObject *keys[] = {k_stdout, k_stderr, k_return_code, k_success, k_values, k_error,
                        k_duration};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (PyDict_SetItem(template, keys[i], Py_None))
            return NULL;
    PyObject *names = PyTuple_New(N_FUNCTIONS);
    if (names == NULL)
        return NULL;
    for (int i = 0; i < N_FUNCTIONS; i++) {
        PyObject *name = PyUnicode_FromString(FUNCTIONS[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL || PyModule_AddObject(m, "FUNCTIONS", names) < 0) {
        Py_DECREF(names);
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
