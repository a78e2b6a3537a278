"""The Numba backend, one idea a module: :mod:`.seam` holds the backend's functions (what
``get_backend("numba")`` returns) and the choice of algorithm; the kernels, the thread pool
(:mod:`.threads`), the memory kept between calls
(:mod:`~gcn_numpy.backends.numba.memory`), the Winograd tiles (:mod:`.winograd`,
:mod:`.winograd_layers`), im2col (:mod:`.im2col`), the sparse kernels (:mod:`.sparse`),
padding (:mod:`.padding`), the pointwise loops (:mod:`.pointwise`) and BLAS (:mod:`.blas`)
live beside it. docs/numba_design.md describes the design and the measurements behind it."""
