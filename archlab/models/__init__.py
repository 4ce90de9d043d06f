"""Model families, one per file; importing this package registers them."""

from archlab.models._classifier import Classifier, build_classifier, infer_feature_shape
from archlab.models.crnet import CRNet
from archlab.models.mini_vgg import MiniVGG
from archlab.models.mnist_cnn import MnistCNN
from archlab.models.vgg5 import VGG5
from archlab.models.vgg import VGG
from archlab.models.resnet import ResNet
from archlab.models.recurrent_resnet import RecurrentResNet
from archlab.models.densenet import DenseNet
from archlab.models.efficientnet import EfficientNet
from archlab.models.efficientnet_v2 import EfficientNetV2
from archlab.models.connected_net import ConnectedNet, ConnectedClassifier
from archlab.models.unet import UNet, SegmentationOutput
from archlab.models.ncp_conv import NCPConv

__all__ = ["Classifier", "build_classifier", "infer_feature_shape", "CRNet", "MiniVGG", "MnistCNN", "VGG5", "VGG", "ResNet", "RecurrentResNet", "DenseNet", "EfficientNet", "EfficientNetV2", "UNet", "SegmentationOutput", "NCPConv"]
