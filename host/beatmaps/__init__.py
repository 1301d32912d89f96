"""Beat-map files and what is made from them: the format and its versions
(``beatmap``), user corrections (``corrections``), the device bundle's source
(``bundling``) and a PNG of a map (``plot``)."""
