/* The compiled twin of persona_sync.dn's fast path: the key of a DN already in its key's
 * shape but for case (most DNs), found without regular expressions.
 *
 * Why: an org chart of 100,000 people keys every entry's DN (dn.normalize_new_dn); the
 * fast path's regular expressions and substring tests took 0.26-0.38 s of a full read's
 * CPU, where the read itself waits on the server. This module is optional, built when
 * the machine that installs persona-sync has a C compiler; dn.py falls back to its own
 * fast path otherwise. tests/test_dn.py checks that both give the same on every text.
 *
 * plain_key(dn) -> str | None (None also for a str subclass: the general path's)
 *   An ASCII DN: dn.lower() when it has the shape of dn._PLAIN_ASCII (types of letters,
 *   digits and "-", values without special characters or white space other than the
 *   ASCII space), no space at a value's ends or two in a row, and no long type name
 *   (one ending in "name", "userid", "address" or "component"); else None.
 *   Any other text: dn._plain_folded(dn): NFKC, case folded and NFKC again, when the
 *   text and its folding both have that shape (white space: what str.isspace() calls
 *   so) and the folding passes the space and long-name tests; else None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *normalize = NULL; /* unicodedata.normalize */
static PyObject *nfkc = NULL;      /* "NFKC" */

static int
ascii_letter(Py_UCS4 c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* A character no plain value holds: a special one, or white space but the ASCII space
 * (the characters of dn._SPACES). */
static int
special(Py_UCS4 c)
{
    switch (c) {
    case '=': case ',': case '\\': case '"': case '+': case '#': case ';': case '<': case '>':
    case '\t': case '\n': case 0x0b: case 0x0c: case '\r':
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f:
    case 0x3000:
        return 1;
    }
    return (c >= 0x1c && c <= 0x1f) || (c >= 0x2000 && c <= 0x200a);
}

static int
ends_with(const void *data, int kind, Py_ssize_t end, const char *suffix)
{
    Py_ssize_t size = (Py_ssize_t)strlen(suffix);
    if (end < size)
        return 0;
    for (Py_ssize_t i = 0; i < size; i++)
        if (PyUnicode_READ(kind, data, end - size + i) != (Py_UCS4)suffix[i])
            return 0;
    return 1;
}

/* Whether text is type=value(,type=value)* with plain types and values; with `spaced`,
 * also no space at a value's ends or two in a row, and no long type name (these look at
 * the text as it is: the caller passes it lower-cased or folded). */
static int
plain(PyObject *text, int spaced)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), i = 0;
    for (;;) {
        if (i >= size || !ascii_letter(PyUnicode_READ(kind, data, i)))
            return 0;
        for (i++; i < size; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (!(ascii_letter(c) || (c >= '0' && c <= '9') || c == '-'))
                break;
        }
        if (i >= size || PyUnicode_READ(kind, data, i) != '=')
            return 0;
        if (spaced && (ends_with(data, kind, i, "name") || ends_with(data, kind, i, "userid")
                       || ends_with(data, kind, i, "address")
                       || ends_with(data, kind, i, "component")))
            return 0;
        Py_ssize_t start = ++i;
        Py_UCS4 previous = 0;
        for (; i < size; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c == ',')
                break;
            if (special(c))
                return 0;
            if (spaced && c == ' ' && (i == start || previous == ' '))
                return 0;
            previous = c;
        }
        if (i == start || (spaced && previous == ' '))
            return 0;
        if (i == size)
            return 1;
        i++; /* the "," */
    }
}

static PyObject *
nfkc_of(PyObject *text)
{
    return PyObject_CallFunctionObjArgs(normalize, nfkc, text, NULL);
}

static PyObject *
plain_key(PyObject *module, PyObject *dn)
{
    (void)module;
    if (!PyUnicode_Check(dn)) {
        PyErr_SetString(PyExc_TypeError, "plain_key() takes a str");
        return NULL;
    }
    if (!PyUnicode_CheckExact(dn)) /* its own lower() could return anything: the general path */
        Py_RETURN_NONE;
    if (PyUnicode_READY(dn) < 0)
        return NULL;
    if (PyUnicode_IS_ASCII(dn)) {
        PyObject *lowered = PyObject_CallMethod(dn, "lower", NULL);
        if (lowered == NULL || plain(lowered, 1))
            return lowered;
        Py_DECREF(lowered);
        Py_RETURN_NONE;
    }
    if (!plain(dn, 0))
        Py_RETURN_NONE;
    PyObject *once = nfkc_of(dn);
    if (once == NULL)
        return NULL;
    PyObject *folded = PyObject_CallMethod(once, "casefold", NULL);
    Py_DECREF(once);
    if (folded == NULL)
        return NULL;
    PyObject *key = nfkc_of(folded);
    Py_DECREF(folded);
    if (key == NULL || plain(key, 1))
        return key;
    Py_DECREF(key);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"plain_key", plain_key, METH_O,
     "plain_key(dn): the key of a DN in its key's shape but for case, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "persona_sync._dn",
    "The fast path of persona_sync.dn, compiled.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__dn(void)
{
    PyObject *unicodedata = PyImport_ImportModule("unicodedata");
    if (unicodedata == NULL)
        return NULL;
    normalize = PyObject_GetAttrString(unicodedata, "normalize");
    Py_DECREF(unicodedata);
    nfkc = PyUnicode_InternFromString("NFKC");
    if (normalize == NULL || nfkc == NULL) {
        Py_CLEAR(normalize);
        Py_CLEAR(nfkc);
        return NULL;
    }
    return PyModule_Create(&module);
}
