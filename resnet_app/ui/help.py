"""Help > Getting started: what a data folder looks like, what the plot means, what to do when the
accuracy is low. A window of its own (not modal), so it can stay open beside the app."""
from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

GETTING_STARTED = """
<h2>Getting started</h2>

<h3>1. Classify images</h3>
<p>Open a model (File &gt; Open model, or drop a <code>.safetensors</code> file on the window), then drop
images or folders on the Classify tab, paste an image (Ctrl+V), or use Open images. Each row shows the
most likely classes with their probabilities. No model yet? The Classify tab offers three ways to start.</p>

<h3>2. Train on your own images</h3>
<p>Put your images in one folder with <b>one sub-folder per class</b>; the sub-folder's name is the
class's name:</p>
<pre>flowers/
  daisy/   img001.jpg  img002.jpg ...
  rose/    ...
  tulip/   ...</pre>
<p>A few dozen images a class are enough when training starts from ImageNet weights; from scratch, aim
for hundreds. On the Train tab, choose (or drop) the folder and read the report: it lists the classes,
how many images each has, files that can't be read, and duplicates. Then press <b>Start</b>. The defaults
work; point at any setting to read what it changes.</p>

<h3>3. Read the plot</h3>
<ul>
<li><b>Batch loss</b> (faint) and its smoothed line: how wrong the model is on the images it is training
on, batch by batch. It should go down.</li>
<li><b>Train loss</b> and <b>val loss</b> (per epoch): the same on all training images, and on the held-out
validation images the model never trains on. When the validation loss goes up while the training loss
goes down, the model is memorising its training images.</li>
<li><b>Val accuracy</b> (right axis): the share of validation images it gets right. This is the figure
that tells how well the model will do on new images. The best epoch is the one saved as the model.</li>
</ul>
<p>Tick <b>Log scale</b> to see very high and low losses together.</p>

<h3>4. When the accuracy is low</h3>
<ul>
<li>Start from <b>ImageNet weights</b> (Train tab, Start from), especially with few images.</li>
<li>Check the data: the report's unreadable files and duplicates; a class with very few images; images
filed under the wrong class (the Evaluate view shows the most wrong images first, and moves them).</li>
<li>Add images: a few dozen more of each class usually help more than any setting. The <b>Review</b> tab
shows new images the model is least sure of first: press a class's number to add each to your data set,
then Retrain.</li>
<li>Train longer (more epochs), or with <b>Full</b> training (all layers) if you have a GPU.</li>
<li>Turn on <b>Random mirroring</b> for photos of things that look the same mirrored; leave it off for
letters, arrows, or left/right things.</li>
</ul>

<h3>5. Pause, stop, resume</h3>
<p>Pause and Stop act after the current batch, and save a checkpoint first: nothing is lost. A stopped or
interrupted run is in the Runs list (below the plot), and the app offers to resume it when it starts.</p>
"""


class GettingStartedDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Getting started")
        self.setObjectName("gettingStarted")
        self.resize(640, 620)
        self.text = QTextBrowser()
        self.text.setHtml(GETTING_STARTED)
        self.text.setOpenExternalLinks(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(buttons)
