/* The compiled twins of ldap_stream._entry and ldap_stream._frame: searchResEntry
 * messages found and decoded in C.
 *
 * Why: a full read of 100,000 entries spent 1.2 s of CPU in the pure-Python walk of
 * their BER (ldap_stream._entry), about as long as the whole ldapsearch of the same
 * entries; this module takes 0.23-0.25 s (a fifth), most of it making the str objects,
 * and finds the messages in a page's bytes as well. It is optional: built when the
 * machine that installs persona-sync has a C compiler, and ldap_stream falls back to
 * the Python walks otherwise. It is stricter than the walk: every length is checked
 * against its element (the walk only stops at the end of the buffer), so a malformed
 * entry raises ValueError here; whatever it decodes, the walk decodes alike
 * (tests/ldap/test_stream_decoder.py checks both on generated and on mangled entries).
 *
 * decode_entries(buffer, spans, names, convert) -> list[(dn, {name: text})]
 *   buffer   bytes of a page of LDAP messages
 *   spans    list of (start, end): the [APPLICATION 4] tag of each searchResEntry in
 *            buffer, and the end of its message
 *   names    dict: attribute type as sent (bytes) -> lower-case name (str); filled in
 *            as new types come, as the Python walk does
 *   convert  dict: lower-case name -> callable(bytes) -> str | None, for attributes
 *            whose values are not UTF-8 text
 * Only the first value of each attribute is kept: through its converter when it has
 * one, else as UTF-8 text, else (binary) not at all. The DN is decoded with "replace".
 * A length that runs past its element raises ValueError naming the byte where that
 * element starts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The length that follows a tag at buf[*pos]; *pos moves past tag and length. -1 when
 * the element's header or its contents would run past `end`. */
static Py_ssize_t
element(const unsigned char *buf, Py_ssize_t *pos, Py_ssize_t end)
{
    Py_ssize_t at = *pos + 1; /* the tag is not checked: the Python walk does not either */
    if (at >= end)
        return -1;
    unsigned char first = buf[at++];
    uint64_t length = first; /* 4 length bytes overflow a 32-bit Py_ssize_t */
    if (first & 0x80) {
        int count = first & 0x7F;
        if (count > 4 || at + count > end)
            return -1;
        length = 0;
        for (int i = 0; i < count; i++)
            length = (length << 8) | buf[at++];
    }
    if (length > (uint64_t)(end - at))
        return -1;
    *pos = at;
    return (Py_ssize_t)length;
}

static PyObject *
malformed(Py_ssize_t at)
{
    return PyErr_Format(PyExc_ValueError, "malformed searchResEntry at byte %zd", at);
}

/* The attribute's lower-case name, borrowed from `names` (added when new). */
static PyObject *
name_of(PyObject *names, const char *kind, Py_ssize_t size)
{
    PyObject *key = PyBytes_FromStringAndSize(kind, size);
    if (key == NULL)
        return NULL;
    PyObject *name = PyDict_GetItemWithError(names, key);
    if (name == NULL && !PyErr_Occurred()) {
        PyObject *text = PyUnicode_DecodeUTF8(kind, size, "replace");
        if (text != NULL) {
            PyObject *lower = PyObject_CallMethod(text, "lower", NULL);
            Py_DECREF(text);
            if (lower != NULL) {
                if (PyDict_SetItem(names, key, lower) == 0)
                    name = lower; /* `names` holds it now */
                Py_DECREF(lower);
            }
        }
    }
    Py_DECREF(key);
    return name;
}

/* The first value's text, or Py_None (new references both); NULL on an error. */
static PyObject *
value_of(PyObject *convert, PyObject *name, const char *raw, Py_ssize_t size)
{
    PyObject *converter = PyDict_GetItemWithError(convert, name);
    if (converter != NULL) {
        PyObject *data = PyBytes_FromStringAndSize(raw, size);
        if (data == NULL)
            return NULL;
        PyObject *text = PyObject_CallOneArg(converter, data);
        Py_DECREF(data);
        return text;
    }
    if (PyErr_Occurred())
        return NULL;
    PyObject *text = PyUnicode_DecodeUTF8(raw, size, NULL);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear(); /* binary values (photos, SIDs) are not facts */
        Py_RETURN_NONE;
    }
    return text;
}

/* Decode the attributes between pos and end into `values`; 0, or -1 with an error. */
static int
attributes(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, PyObject *values,
           PyObject *names, PyObject *convert)
{
    while (pos < end) {
        /* PartialAttribute: SEQUENCE { type OCTET STRING, vals SET OF OCTET STRING } */
        Py_ssize_t start = pos;
        Py_ssize_t length = element(buf, &pos, end);
        if (length < 0)
            goto bad;
        Py_ssize_t following = pos + length;
        length = element(buf, &pos, following);
        if (length < 0)
            goto bad;
        const char *kind = (const char *)buf + pos;
        Py_ssize_t kind_size = length;
        pos += length;
        length = element(buf, &pos, following);
        if (length < 0)
            goto bad;
        if (length) { /* empty sets are left out */
            length = element(buf, &pos, following);
            if (length < 0)
                goto bad;
            PyObject *name = name_of(names, kind, kind_size);
            if (name == NULL)
                return -1;
            Py_INCREF(name); /* borrowed from `names`, which a converter could change */
            PyObject *text = value_of(convert, name, (const char *)buf + pos, length);
            int failed = text == NULL
                         || (text != Py_None && PyDict_SetItem(values, name, text) < 0);
            Py_XDECREF(text);
            Py_DECREF(name);
            if (failed)
                return -1;
        }
        pos = following;
        continue;
    bad:
        malformed(start);
        return -1;
    }
    return 0;
}

/* One searchResEntry: (dn, values), a new reference, or NULL with an error. */
static PyObject *
entry(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, PyObject *names,
      PyObject *convert)
{
    Py_ssize_t start = pos;
    /* [APPLICATION 4] header: its contents are walked, not skipped */
    if (element(buf, &pos, end) < 0)
        return malformed(start);
    /* objectName: OCTET STRING */
    Py_ssize_t length = element(buf, &pos, end);
    if (length < 0)
        return malformed(start);
    PyObject *dn = PyUnicode_DecodeUTF8((const char *)buf + pos, length, "replace");
    if (dn == NULL)
        return NULL;
    pos += length;
    /* attributes: SEQUENCE OF PartialAttribute (controls of the message may follow) */
    PyObject *values = NULL;
    length = element(buf, &pos, end);
    if (length < 0) {
        malformed(start);
        goto fail;
    }
    values = PyDict_New();
    if (values == NULL || attributes(buf, pos, pos + length, values, names, convert) < 0)
        goto fail;
    PyObject *result = PyTuple_Pack(2, dn, values);
    Py_DECREF(dn);
    Py_DECREF(values);
    return result;
fail:
    Py_DECREF(dn);
    Py_XDECREF(values);
    return NULL;
}

static PyObject *
decode_entries(PyObject *module, PyObject *args)
{
    Py_buffer view;
    PyObject *spans, *names, *convert;
    if (!PyArg_ParseTuple(args, "y*O!O!O!:decode_entries", &view, &PyList_Type, &spans,
                          &PyDict_Type, &names, &PyDict_Type, &convert))
        return NULL;
    const unsigned char *buf = view.buf;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto done;
    /* the size is read each time: a converter could change the list */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(spans); i++) {
        Py_ssize_t start, end;
        PyObject *span = PyList_GET_ITEM(spans, i);
        if (!PyTuple_Check(span) || PyTuple_GET_SIZE(span) != 2) {
            PyErr_SetString(PyExc_TypeError, "a span is a (start, end) tuple");
            goto fail;
        }
        start = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 0));
        end = PyLong_AsSsize_t(PyTuple_GET_ITEM(span, 1));
        if ((start == -1 || end == -1) && PyErr_Occurred())
            goto fail;
        if (start < 0 || end > view.len || start >= end) {
            PyErr_Format(PyExc_ValueError, "span (%zd, %zd) outside the buffer", start, end);
            goto fail;
        }
        PyObject *decoded = entry(buf, start, end, names, convert);
        if (decoded == NULL)
            goto fail;
        int failed = PyList_Append(out, decoded);
        Py_DECREF(decoded);
        if (failed)
            goto fail;
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&view);
    return out;
}

/* frame_messages(buffer, position, spans) -> (position, tag, end)
 *
 * The compiled twin of ldap_stream._frame: walk the complete LDAPMessages in buffer from
 * position on, add (start of its protocolOp, end) of each searchResEntry to spans and
 * skip each searchResRef; stop at the first other message, returning where it starts,
 * its protocolOp's tag and its end (never 0), or, when the rest is not a whole message
 * yet, (position, 0, 0). A message whose header does not fit in itself raises ValueError.
 */
static PyObject *
frame_messages(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t position;
    PyObject *spans;
    if (!PyArg_ParseTuple(args, "y*nO!:frame_messages", &view, &position, &PyList_Type, &spans))
        return NULL;
    const unsigned char *buf = view.buf;
    Py_ssize_t size = view.len, tag = 0, end = 0;
    if (position < 0 || position > size) {
        PyErr_Format(PyExc_ValueError, "position %zd outside the buffer", position);
        goto fail;
    }
    while (position + 2 <= size) {
        Py_ssize_t start = position + 2;
        uint64_t length = buf[position + 1]; /* 4 length bytes overflow a 32-bit Py_ssize_t */
        if (length & 0x80) {
            int count = length & 0x7F;
            if (count == 0 || count > 4) {
                PyErr_Format(PyExc_ValueError, "malformed message at byte %zd", position);
                goto fail;
            }
            start += count;
            if (start > size)
                break;
            length = 0;
            for (Py_ssize_t at = position + 2; at < start; at++)
                length = (length << 8) | buf[at];
        }
        if (length > (uint64_t)(size - start))
            break; /* not whole yet */
        end = start + (Py_ssize_t)length;
        /* messageID: INTEGER, short length (ids stay below 2**31) */
        Py_ssize_t operation = start + 2;
        if (start + 1 < end)
            operation += buf[start + 1];
        if (start + 1 >= end || (buf[start + 1] & 0x80) || operation >= end) {
            PyErr_Format(PyExc_ValueError, "malformed message at byte %zd", position);
            goto fail;
        }
        tag = buf[operation];
        if (tag == 0x64) { /* searchResEntry */
            PyObject *span = Py_BuildValue("(nn)", operation, end);
            if (span == NULL)
                goto fail;
            int failed = PyList_Append(spans, span);
            Py_DECREF(span);
            if (failed)
                goto fail;
        }
        else if (tag != 0x73) { /* not a searchResRef, which is skipped: the caller's */
            PyBuffer_Release(&view);
            return Py_BuildValue("(nnn)", position, tag, end);
        }
        position = end;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnn)", position, (Py_ssize_t)0, (Py_ssize_t)0);
fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_entries", decode_entries, METH_VARARGS,
     "decode_entries(buffer, spans, names, convert): each span's searchResEntry as "
     "(dn, {lower-case name: first value as text})."},
    {"frame_messages", frame_messages, METH_VARARGS,
     "frame_messages(buffer, position, spans): the searchResEntry spans of the whole "
     "messages from position on, up to the first other message: (position, tag, end)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "persona_sync.directory._ber",
    "searchResEntry messages decoded in C (ldap_stream's accelerator).", -1, methods,
};

PyMODINIT_FUNC
PyInit__ber(void)
{
    return PyModule_Create(&module);
}
